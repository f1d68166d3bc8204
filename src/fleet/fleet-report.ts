// `kms-appliance fleet report`: the organisation-wide view read from the fleet database's views
// (remote-schema.ts): distinct machines per product and per site, compliance against the
// organisation's entitlements, sites gone silent, and CMIDs seen at more than one site.

import type { ClientBase } from 'pg';

interface ProductUse {
  readonly applicationName: string;
  readonly groupName: string;
  readonly productName: string;
  /** Distinct machines organisation-wide: a CMID seen at two sites counts once. */
  readonly activeMachines: number;
  readonly sites: number;
}

interface SiteProductUse {
  readonly siteName: string;
  readonly applianceId: string;
  readonly productName: string;
  readonly groupName: string;
  readonly activeMachines: number;
  readonly lastActivation: string | null;
}

interface EntitlementUse {
  readonly product: string;
  readonly licenses: number;
  readonly activeMachines: number;
  readonly excess: number;
  readonly overUse: boolean;
}

interface SiteState {
  readonly siteName: string;
  readonly applianceId: string;
  readonly hostName: string;
  readonly softwareVersion: string;
  readonly lastContact: string;
  readonly silentHours: number;
  readonly silent: boolean;
  readonly lastActivation: string | null;
  readonly activeMachines: number;
  /** Events the box still held unsent at its last report. */
  readonly backlogEvents: number;
}

interface SharedCmid {
  readonly application: string;
  readonly cmid: string;
  readonly sites: number;
  readonly siteNames: readonly string[];
  readonly workstations: readonly string[];
  readonly lastSeen: string;
}

export interface FleetReport {
  readonly generatedAt: string;
  readonly windowDays: 30;
  readonly silentAfterHours: number;
  readonly products: readonly ProductUse[];
  readonly perSite: readonly SiteProductUse[];
  readonly compliance: readonly EntitlementUse[];
  readonly sites: readonly SiteState[];
  readonly sharedCmids: readonly SharedCmid[];
}

const iso = (v: Date | null): string | null => (v === null ? null : v.toISOString());

/** Reads the whole report in one read-only snapshot, so its numbers agree with each other. */
export async function readFleetReport(client: ClientBase, silentAfterHours: number): Promise<FleetReport> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const now = await client.query<{ now: Date }>('SELECT now() AS now');
    const products = await client.query<{
      application_name: string;
      group_name: string;
      product_name: string;
      active_machines: string;
      sites: string;
    }>('SELECT * FROM kms_fleet.machines_per_product ORDER BY active_machines DESC, product_name');
    const perSite = await client.query<{
      site_name: string;
      appliance_id: string;
      product_name: string;
      group_name: string;
      active_machines: string;
      last_activation: Date | null;
    }>('SELECT * FROM kms_fleet.machines_per_product_per_site ORDER BY site_name, active_machines DESC, product_name');
    const compliance = await client.query<{
      product: string;
      licenses: number;
      active_machines: string;
      excess: string;
      over_use: boolean;
    }>('SELECT * FROM kms_fleet.compliance ORDER BY over_use DESC, product');
    const sites = await client.query<{
      site_name: string;
      appliance_id: string;
      host_name: string;
      software_version: string;
      last_contact: Date;
      silent_seconds: number;
      last_activation: Date | null;
      active_machines: string;
      backlog_events: string;
    }>(
      `SELECT site_name, appliance_id, host_name, software_version, last_contact, extract(epoch FROM silent_for)::float8 AS silent_seconds,
         last_activation, active_machines, backlog_events
       FROM kms_fleet.site_status ORDER BY last_contact, site_name`,
    );
    const shared = await client.query<{
      application: string;
      cmid: string;
      sites: string;
      site_names: string[];
      workstations: string[];
      last_seen: Date;
    }>('SELECT * FROM kms_fleet.cmid_at_several_sites ORDER BY sites DESC, last_seen DESC, cmid');
    await client.query('COMMIT');
    return {
      generatedAt: now.rows[0]!.now.toISOString(),
      windowDays: 30,
      silentAfterHours,
      products: products.rows.map((r) => ({
        applicationName: r.application_name,
        groupName: r.group_name,
        productName: r.product_name,
        activeMachines: Number(r.active_machines),
        sites: Number(r.sites),
      })),
      perSite: perSite.rows.map((r) => ({
        siteName: r.site_name,
        applianceId: r.appliance_id,
        productName: r.product_name,
        groupName: r.group_name,
        activeMachines: Number(r.active_machines),
        lastActivation: iso(r.last_activation),
      })),
      compliance: compliance.rows.map((r) => ({
        product: r.product,
        licenses: r.licenses,
        activeMachines: Number(r.active_machines),
        excess: Number(r.excess),
        overUse: r.over_use,
      })),
      sites: sites.rows.map((r) => {
        const silentHours = Math.max(0, r.silent_seconds) / 3600;
        return {
          siteName: r.site_name,
          applianceId: r.appliance_id,
          hostName: r.host_name,
          softwareVersion: r.software_version,
          lastContact: r.last_contact.toISOString(),
          silentHours: Math.round(silentHours * 10) / 10,
          silent: silentHours > silentAfterHours,
          lastActivation: iso(r.last_activation),
          activeMachines: Number(r.active_machines),
          backlogEvents: Number(r.backlog_events),
        };
      }),
      sharedCmids: shared.rows.map((r) => ({
        application: r.application,
        cmid: r.cmid,
        sites: Number(r.sites),
        siteNames: r.site_names,
        workstations: r.workstations.filter((w) => w !== ''),
        lastSeen: r.last_seen.toISOString(),
      })),
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
