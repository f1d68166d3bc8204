// The read side of the activation database: per-application and per-group counts, the client
// list, machines cloned without sysprep. It opens the file read-only, so the CLI and the admin
// page can read while the server writes (WAL mode: readers never block the writer).

import * as fs from 'node:fs';
import Database from 'better-sqlite3';
import { COUNT_WINDOW_MS, reportedCount } from '../host/counting';
import { EPID_SETTING_PREFIX, HWID_SETTING } from '../host/host-identity';
import type { StoredClientRow } from './rows';
import { STORE_TUNING } from '../config/defaults';
import { databaseFile } from './data-dir';
import { openDatabase, SCHEMA_VERSION } from './schema';
import { ID_NAMES, memoizeNames, type NameResolver } from '../catalog/name-resolver';

interface GroupSummary {
  readonly groupId: string;
  readonly groupName: string;
  /** Distinct machines of this group counted inside the window. */
  readonly activeMachines: number;
  /** What its clients need: the catalogue's threshold, or (group unknown to it) the largest they sent. */
  readonly requiredCount: number;
  /** Whether the application's count reaches what this group's clients need. */
  readonly activates: boolean;
  readonly lastActivationMs: number;
}

export interface ApplicationSummary {
  readonly applicationId: string;
  readonly applicationName: string;
  /** Distinct machines counted inside the window (PROTOCOL.md §7.2). */
  readonly activeMachines: number;
  /**
   * What the application's counted products need: the largest catalogue threshold (nCountPolicy) of
   * its groups in the window; for groups the catalogue does not know, what their clients asked.
   * 0 when nothing was served in the window.
   */
  readonly threshold: number;
  /** Largest RequiredClientCount served inside the window: the wire's cap follows it (§7.2); 0 when none. */
  readonly largestRequested: number;
  /** What a client is told now: activeMachines capped at 2 × largestRequested. */
  readonly reportedCount: number;
  /** Machines still missing before the application's products activate (against `threshold`). */
  readonly missing: number;
  readonly activates: boolean;
  /** Host time of the latest served request; null when none is in the window. */
  readonly lastActivationMs: number | null;
  readonly groups: readonly GroupSummary[];
  /**
   * Counted machines whose latest request asked for another threshold than their group's clients
   * do (a misconfigured or forged client): shown, never used as what is needed. Largest first.
   */
  readonly unusualRequests: readonly UnusualRequest[];
  /** How many (group, value) kinds there are; unusualRequests keeps the UNUSUAL_REQUESTS_KEPT largest. */
  readonly unusualRequestKinds: number;
}

export interface UnusualRequest {
  readonly groupName: string;
  /** What the machines asked for (RequiredClientCount, 0 read as 1). */
  readonly requiredCount: number;
  /** What the catalogue says the group's clients ask for. */
  readonly usual: number;
  readonly machines: number;
}

/** The settings key of the last ClockCorrection (written by SqliteStore, read by status). */
export const CLOCK_CORRECTION_SETTING = 'store.clockCorrection';

/** Counting times found more than a day ahead of the host clock, and moved to the moment they were found. */
export interface ClockCorrection {
  /** Host time of the correction: the machines moved count as seen then. */
  readonly correctedAtMs: number;
  /** The latest time found: about what the clock had been set to. */
  readonly aheadUntilMs: number;
  readonly machines: number;
}

/** The RequiredClientCount the catalogue's clients of a KMS group send (nCountPolicy); undefined when unknown. */
export type CatalogThreshold = (groupId: string) => number | undefined;

export interface ClientRecord {
  readonly applicationId: string;
  readonly applicationName: string;
  readonly groupId: string;
  readonly groupName: string;
  readonly skuId: string;
  readonly skuName: string;
  readonly cmid: string;
  readonly workstation: string;
  readonly address: string;
  readonly firstSeenMs: number;
  readonly lastSeenMs: number;
  /** null: never served (only refused). */
  readonly lastCountedMs: number | null;
  /** Counted in the window now. */
  readonly active: boolean;
  readonly licenseStatus: number;
  readonly vm: boolean;
  readonly protocolVersion: number;
  readonly requests: number;
  readonly lastHresult: number;
  readonly requiredCount: number;
}

export interface ClientFilter {
  /** KMS group id, or part of its name (case-insensitive). */
  readonly group?: string;
  /** SKU (activation) id, or part of its name. */
  readonly product?: string;
  /** Application id, or part of its name. */
  readonly application?: string;
  /** Only machines whose last request is older than this host time. */
  readonly notSeenSinceMs?: number;
}

interface SharedCmid {
  readonly cmid: string;
  readonly workstations: readonly string[];
  readonly addresses: readonly string[];
  /** How often the name (or address) under this CMID switched; clones flip back and forth. */
  readonly workstationChanges: number;
  readonly addressChanges: number;
  readonly applications: readonly string[];
}

interface SharedWorkstation {
  readonly workstation: string;
  /** At most CMIDS_PER_NAME_KEPT, the first by CMID. */
  readonly cmids: readonly string[];
  /** Present when cmids was cut to CMIDS_PER_NAME_KEPT: how many CMIDs the name has. */
  readonly machines?: number;
  /** The product line (application) whose CMIDs these are. */
  readonly application?: string;
}

export interface Duplicates {
  /** One CMID answering under several names or addresses: an image deployed without sysprep. */
  readonly sharedCmids: readonly SharedCmid[];
  /** One name with several CMIDs: re-imaged without PreviousClientMachineID, or clashing names. */
  readonly sharedWorkstations: readonly SharedWorkstation[];
  /**
   * Both lists stop at DUPLICATES_LISTED (a client inventing ids can make a million); these say
   * how many there are. Beyond the listed ones, a CMID is counted from its row (its switches), not
   * checked against the events.
   */
  readonly sharedCmidsTotal: number;
  readonly sharedWorkstationsTotal: number;
}

export interface DatabaseInfo {
  readonly file: string;
  readonly schemaVersion: number;
  readonly clients: number;
  readonly events: number;
  readonly sizeBytes: number;
}

/** Active machines per (application, group, SKU), for the compliance report. */
export interface GroupCount {
  readonly applicationId: string;
  readonly groupId: string;
  readonly skuId: string;
  readonly activeMachines: number;
}

// A single DHCP renumbering changes the address once; two machines sharing a CMID keep switching.
const ADDRESS_SWITCHES_FOR_DUPLICATE = 2;
/** A clients row that may be a clone: served in the window, its name or address switching (cutoff, switches). */
const CANDIDATE = 'last_seen_ms >= ? AND last_counted_ms IS NOT NULL AND (workstation_changes > 0 OR address_changes >= ?)';
/** Odd thresholds kept per application summary: a client cycling through values makes thousands. */
const UNUSUAL_REQUESTS_KEPT = 20;
/** Names (and addresses) listed per duplicate CMID: enough to find the clones, bounded for a flood. */
export const MAX_NAMES_KEPT = 16;
/**
 * Duplicate CMIDs, and shared names, examined and listed: a site's clones are a handful, but a
 * client that invents machine ids and names can make a million, and listing every one took 850 MB
 * (in the admin page's worker, inside the server) and printed a million lines.
 */
export const DUPLICATES_LISTED = 1000;
/** CMIDs listed per shared name: a lab's golden image, not the million a client can invent under one name. */
export const CMIDS_PER_NAME_KEPT = 100;
/** The skuId of GroupCount rows that sum the SKUs nobody needs one by one (see groupCounts). */
const OTHER_SKUS = '';

/** What the host presents to clients (kept in the settings table by src/host/host-identity.ts). */
export interface HostIdentityInfo {
  /** The v6 hardware id as 16 hex digits, when one was generated or configured. */
  readonly hwid: string | undefined;
  readonly epids: readonly { readonly hostKeyGroupId: string; readonly hostKeyGroup: string; readonly epid: string }[];
}

/** Refused requests of one kind (error code) in a period: how often, and the latest one. */
export interface RefusalSummary {
  readonly code: string;
  readonly hresult: number;
  readonly count: number;
  readonly lastMs: number;
  readonly lastWorkstation: string;
  readonly lastAddress: string;
  readonly lastGroup: string;
}

export class Inventory {
  private readonly names: NameResolver;

  /** Opens `dataDir`'s database read-only; throws StoreError like SqliteStore.open. */
  static open(dataDir: string, options: { names?: NameResolver; busyTimeoutMs?: number } = {}): Inventory {
    const file = databaseFile(dataDir);
    const db = openDatabase(file, { readonly: true, busyTimeoutMs: options.busyTimeoutMs ?? STORE_TUNING.busyTimeoutMs });
    boundReadCache(db);
    return new Inventory(db, file, options.names ?? ID_NAMES, true);
  }

  /** Reads through an open connection (the server's own store, for the admin page). */
  constructor(
    private readonly db: Database.Database,
    readonly file: string,
    names: NameResolver = ID_NAMES,
    private readonly ownsConnection = false,
  ) {
    this.names = memoizeNames(names);
  }

  close(): void {
    if (this.ownsConnection) this.db.close();
  }

  info(): DatabaseInfo {
    let sizeBytes = 0;
    for (const f of [this.file, `${this.file}-wal`]) {
      try {
        sizeBytes += fs.statSync(f).size;
      } catch {
        // no WAL while no writer has the file open
      }
    }
    return {
      file: this.file,
      schemaVersion: SCHEMA_VERSION,
      clients: this.db.prepare('SELECT count(*) FROM clients').pluck().get() as number,
      events: this.db.prepare('SELECT count(*) FROM events').pluck().get() as number,
      sizeBytes,
    };
  }

  /** The host's HwId and the ePID kept for each host-key group in use, by group name. */
  hostIdentity(): HostIdentityInfo {
    const rows = this.db
      .prepare('SELECT key, value FROM settings WHERE key = ? OR substr(key, 1, ?) = ? ORDER BY key')
      .all(HWID_SETTING, EPID_SETTING_PREFIX.length, EPID_SETTING_PREFIX) as { key: string; value: string }[];
    let hwid: string | undefined;
    const epids: { hostKeyGroupId: string; hostKeyGroup: string; epid: string }[] = [];
    for (const r of rows) {
      if (r.key === HWID_SETTING) {
        hwid = r.value;
        continue;
      }
      const id = r.key.slice(EPID_SETTING_PREFIX.length);
      const epid = r.value;
      epids.push({ hostKeyGroupId: id, hostKeyGroup: this.names.hostKeyGroupName?.(id) ?? id, epid });
    }
    epids.sort((a, b) => a.hostKeyGroup.localeCompare(b.hostKeyGroup));
    return { hwid, epids };
  }

  /** The last correction of counting times a host clock set ahead left behind; undefined when none. */
  clockCorrection(): ClockCorrection | undefined {
    const raw = this.db.prepare('SELECT value FROM settings WHERE key = ?').pluck().get(CLOCK_CORRECTION_SETTING) as string | undefined;
    if (raw === undefined) return undefined;
    try {
      const c = JSON.parse(raw) as Partial<ClockCorrection>;
      const ok = [c.correctedAtMs, c.aheadUntilMs, c.machines].every((n) => typeof n === 'number' && Number.isFinite(n));
      return ok ? (c as ClockCorrection) : undefined;
    } catch {
      return undefined; // written by this program only; a damaged value is not worth a failed status
    }
  }

  /**
   * Refused requests since `sinceMs`, grouped by reason, most frequent first. Events are appended
   * in time order, so the first one in the period is found by bisecting the rowids (no time
   * index is kept: it would cost a write per request).
   */
  refusalsSince(sinceMs: number): RefusalSummary[] {
    const lo = this.firstEventAtOrAfter(sinceMs);
    const rows = this.db
      .prepare(`
        SELECT code, hresult, count(*) AS n, MAX(time_ms) AS last_ms
        FROM events WHERE id >= ? AND served = 0 AND time_ms >= ? GROUP BY code, hresult ORDER BY n DESC, last_ms DESC`)
      .all(lo, sinceMs) as { code: string; hresult: number; n: number; last_ms: number }[];
    const latest = this.db.prepare(
      'SELECT workstation, client_address, kms_group FROM events WHERE id >= ? AND served = 0 AND code = ? AND time_ms = ? ORDER BY id ' +
        'DESC LIMIT 1',
    );
    return rows.map((r) => {
      const l = latest.get(lo, r.code, r.last_ms) as { workstation: string; client_address: string; kms_group: string } | undefined;
      return {
        code: r.code,
        hresult: r.hresult >>> 0,
        count: r.n,
        lastMs: r.last_ms,
        lastWorkstation: l?.workstation ?? '',
        lastAddress: l?.client_address ?? '',
        lastGroup: l?.kms_group ? this.names.groupName(l.kms_group) : '',
      };
    });
  }

  /**
   * Per application, then per KMS group: counts in the window ending at nowMs. With the catalogue's
   * thresholds, what is needed and missing follows them: a client may send any RequiredClientCount
   * up to 1000 (or 1), and one request must not tell the administrator that 975 machines are
   * missing, or none. Without them (no catalogue), what the clients asked.
   */
  summary(nowMs: number, catalogThreshold: CatalogThreshold = () => undefined, windowMs: number = COUNT_WINDOW_MS): ApplicationSummary[] {
    const cutoff = nowMs - windowMs;
    // One read transaction: the numbers of all applications come from the same moment.
    return this.db.transaction(() => {
      const apps = this.db
        .prepare(
          'SELECT application, MAX(CASE WHEN last_served_ms >= ? THEN required_count ELSE 0 END) AS threshold FROM app_required GROUP ' +
            'BY application',
        )
        .all(cutoff) as { application: string; threshold: number }[];
      const countApp = this.db.prepare(
        'SELECT count(*) AS n, MAX(last_counted_ms) AS last FROM clients WHERE application = ? AND last_counted_ms >= ?',
      );
      const groupsOf = this.db.prepare(`
        SELECT kms_group, MAX(1, required_count) AS required, count(*) AS n, MAX(last_counted_ms) AS last
        FROM clients WHERE application = ? AND last_counted_ms >= ? GROUP BY kms_group, MAX(1, required_count)`);
      return apps
        .map(({ application, threshold: largestRequested }) => {
          const { n, last } = countApp.get(application, cutoff) as { n: number; last: number | null };
          const rows = groupsOf.all(application, cutoff) as { kms_group: string; required: number; n: number; last: number }[];
          const { groups, unusualRequests } = this.groupsOf(rows, n, catalogThreshold);
          const unusualRequestKinds = unusualRequests.length;
          const known = groups.length > 0 && groups.some((g) => catalogThreshold(g.groupId) !== undefined);
          const threshold = largestRequested === 0 ? 0 : known ? Math.max(...groups.map((g) => g.requiredCount)) : largestRequested;
          return {
            applicationId: application,
            applicationName: this.names.applicationName(application),
            activeMachines: n,
            threshold,
            largestRequested,
            // Nothing served in the window: nothing is reported. Otherwise the wire's figure (§7.2).
            reportedCount: largestRequested > 0 ? reportedCount({ activeClients: n, maxRequiredClientCount: largestRequested }) : 0,
            missing: Math.max(0, threshold - n),
            activates: threshold > 0 && n >= threshold,
            lastActivationMs: last,
            groups,
            // A client cycling through every value of every group would list thousands (/api/status).
            unusualRequests: unusualRequests.slice(0, UNUSUAL_REQUESTS_KEPT),
            unusualRequestKinds,
          };
        })
        .sort((a, b) => b.activeMachines - a.activeMachines || a.applicationName.localeCompare(b.applicationName));
    })();
  }

  /** Folds the (group, asked threshold) rows of one application into its groups and its odd requests. */
  private groupsOf(
    rows: readonly { kms_group: string; required: number; n: number; last: number }[],
    appMachines: number,
    catalogThreshold: CatalogThreshold,
  ): { groups: GroupSummary[]; unusualRequests: UnusualRequest[] } {
    const byGroup = new Map<string, { n: number; asked: number; last: number }>();
    const unusualRequests: UnusualRequest[] = [];
    for (const r of rows) {
      const g = byGroup.get(r.kms_group) ?? { n: 0, asked: 1, last: r.last };
      g.n += r.n;
      g.asked = Math.max(g.asked, r.required);
      g.last = Math.max(g.last, r.last);
      byGroup.set(r.kms_group, g);
      const usual = catalogThreshold(r.kms_group);
      if (usual !== undefined && r.required !== usual)
        unusualRequests.push({ groupName: this.names.groupName(r.kms_group), requiredCount: r.required, usual, machines: r.n });
    }
    const groups = [...byGroup]
      .map(([groupId, g]): GroupSummary => {
        const requiredCount = catalogThreshold(groupId) ?? g.asked;
        return {
          groupId,
          groupName: this.names.groupName(groupId),
          activeMachines: g.n,
          requiredCount,
          activates: appMachines >= requiredCount,
          lastActivationMs: g.last,
        };
      })
      .sort((a, b) => b.activeMachines - a.activeMachines || (a.groupId < b.groupId ? -1 : a.groupId > b.groupId ? 1 : 0));
    unusualRequests.sort((a, b) => b.requiredCount - a.requiredCount || b.machines - a.machines);
    return { groups, unusualRequests };
  }

  /**
   * Machines matching the filter, by application, group and name. Streams: a site may have many.
   * With `limit` and no name filter, SQLite keeps only that many rows while sorting (a top-N sort)
   * instead of ordering the whole table before the first row.
   */
  *clients(filter: ClientFilter, nowMs: number, windowMs: number = COUNT_WINDOW_MS, limit?: number): Generator<ClientRecord> {
    const cutoff = nowMs - windowMs;
    const { where, params } = silenceClause(filter);
    const byName = filter.application !== undefined || filter.group !== undefined || filter.product !== undefined;
    const top = limit !== undefined && !byName ? ` LIMIT ${Math.max(0, Math.floor(limit))}` : '';
    const sql = `SELECT * FROM clients ${where} ORDER BY application, kms_group, workstation, cmid${top}`;
    const keep = this.clientMatcher(filter);
    let yielded = 0;
    for (const row of this.db.prepare(sql).iterate(...params) as IterableIterator<StoredClientRow>) {
      if (limit !== undefined && yielded >= limit) return;
      if (!keep(row)) continue;
      yielded++;
      yield this.toRecord(row, cutoff);
    }
  }

  /** How many machines `clients(filter)` lists, without building a record for each. */
  countClients(filter: ClientFilter): number {
    const { where, params } = silenceClause(filter);
    if (filter.application === undefined && filter.group === undefined && filter.product === undefined)
      return this.db
        .prepare(`SELECT count(*) FROM clients ${where}`)
        .pluck()
        .get(...params) as number;
    const keep = this.clientMatcher(filter);
    let n = 0;
    const rows = this.db.prepare(`SELECT application, kms_group, sku FROM clients ${where}`).iterate(...params);
    for (const row of rows as IterableIterator<Pick<StoredClientRow, 'application' | 'kms_group' | 'sku'>>) if (keep(row)) n++;
    return n;
  }

  private clientMatcher(filter: ClientFilter): (row: Pick<StoredClientRow, 'application' | 'kms_group' | 'sku'>) => boolean {
    const matchApp = matcher(filter.application, (id) => this.names.applicationName(id));
    const matchGroup = matcher(filter.group, (id) => this.names.groupName(id));
    const product = filter.product;
    return (row) =>
      matchApp(row.application) &&
      matchGroup(row.kms_group) &&
      (product === undefined || matches(product, row.sku, this.names.skuName(row.sku, row.kms_group)));
  }

  /**
   * Evidence of cloned machines among those served in the window, per product line (a PC's
   * Windows and its Office are separate CMIDs of one name, not a clone). The names and addresses
   * a CMID was served under come from the served events of the window (at most
   * MAX_NAMES_KEPT each; the clients table keeps only the current and previous one), so three
   * machines sharing one image all show; refused requests do not count.
   */
  duplicates(nowMs: number, windowMs: number = COUNT_WINDOW_MS): Duplicates {
    const cutoff = nowMs - windowMs;
    const candidates = this.db
      .prepare(`
        SELECT application, cmid, workstation, previous_workstation, client_address, previous_address,
          workstation_changes, address_changes
        FROM clients WHERE ${CANDIDATE} ORDER BY cmid, application LIMIT ?`)
      .all(cutoff, ADDRESS_SWITCHES_FOR_DUPLICATE, DUPLICATES_LISTED) as {
      application: string;
      cmid: string;
      workstation: string;
      previous_workstation: string;
      client_address: string;
      previous_address: string;
      workstation_changes: number;
      address_changes: number;
    }[];
    const seen = new Map<
      string,
      { names: Set<string>; addresses: Set<string>; name?: string; address?: string; nameSwitches: number; addressSwitches: number }
    >();
    if (candidates.length > 0) {
      for (const c of candidates)
        seen.set(`${c.application} ${c.cmid}`, { names: new Set(), addresses: new Set(), nameSwitches: 0, addressSwitches: 0 });
      const rows = this.db
        .prepare(`
          SELECT application, cmid, workstation, client_address FROM events
          WHERE id >= ? AND served = 1 AND time_ms >= ? AND cmid IN (SELECT value FROM json_each(?)) ORDER BY id`)
        .iterate(
          this.firstEventAtOrAfter(cutoff),
          cutoff,
          JSON.stringify([...new Set(candidates.map((c) => c.cmid))]),
        ) as IterableIterator<{
        application: string;
        cmid: string;
        workstation: string;
        client_address: string;
      }>;
      for (const e of rows) {
        const m = seen.get(`${e.application} ${e.cmid}`);
        if (!m) continue;
        if (m.name !== undefined && e.workstation.toLowerCase() !== m.name) m.nameSwitches++;
        if (m.address !== undefined && e.client_address !== m.address) m.addressSwitches++;
        m.name = e.workstation.toLowerCase();
        m.address = e.client_address;
        if (e.workstation !== '' && m.names.size < MAX_NAMES_KEPT) m.names.add(e.workstation.toLowerCase());
        if (e.client_address !== '' && m.addresses.size < MAX_NAMES_KEPT) m.addresses.add(e.client_address);
      }
    }
    const sharedCmids: SharedCmid[] = [];
    for (const c of candidates) {
      const m = seen.get(`${c.application} ${c.cmid}`)!;
      // No served event left in the window (pruned by store.maxEvents): what the clients row knows.
      const fromEvents = m.name !== undefined;
      const workstations = fromEvents ? [...m.names].sort() : distinct(`${c.workstation}\n${c.previous_workstation}`.toLowerCase());
      const addresses = fromEvents ? [...m.addresses].sort() : distinct(`${c.client_address}\n${c.previous_address}`);
      const workstationChanges = fromEvents ? m.nameSwitches : c.workstation_changes;
      const addressChanges = fromEvents ? m.addressSwitches : c.address_changes;
      if (workstations.length < 2 && addressChanges < ADDRESS_SWITCHES_FOR_DUPLICATE) continue;
      sharedCmids.push({
        cmid: c.cmid,
        workstations,
        addresses,
        workstationChanges,
        addressChanges,
        applications: [this.names.applicationName(c.application)],
      });
    }
    // Candidates beyond those examined: counted from their rows (the events scan above is what a
    // million of them would make too costly).
    const unexamined =
      candidates.length < DUPLICATES_LISTED
        ? 0
        : Math.max(
            0,
            (this.db
              .prepare(`SELECT count(*) FROM clients WHERE ${CANDIDATE}`)
              .pluck()
              .get(cutoff, ADDRESS_SWITCHES_FOR_DUPLICATE) as number) - candidates.length,
          );
    return { sharedCmids, sharedCmidsTotal: sharedCmids.length + unexamined, ...this.sharedWorkstations(cutoff) };
  }

  /**
   * Names served under several CMIDs in the window, per application: the first DUPLICATES_LISTED
   * names with their first CMIDS_PER_NAME_KEPT CMIDs each, and how many names there are. Streamed: a
   * name a client gave a million invented ids is a million rows, never one string or array.
   */
  private sharedWorkstations(cutoff: number): Pick<Duplicates, 'sharedWorkstations' | 'sharedWorkstationsTotal'> {
    const served = "workstation <> '' AND last_seen_ms >= ? AND last_counted_ms IS NOT NULL";
    // (application, cmid) is the key, so count(*) counts distinct CMIDs. A GROUP BY sorts within the
    // connection's cache; a window function over one name's million rows kept a 16 MB buffer of its own.
    const names = this.db
      .prepare(`
        SELECT application, lower(workstation) AS workstation, count(*) AS n FROM clients WHERE ${served}
        GROUP BY application, lower(workstation) HAVING n > 1 ORDER BY 2, 1`)
      .iterate(cutoff) as IterableIterator<{ application: string; workstation: string; n: number }>;
    const listed = new Map<string, { workstation: string; cmids: string[]; machines?: number; application: string }>();
    let total = 0;
    for (const r of names) {
      total++;
      if (listed.size >= DUPLICATES_LISTED) continue;
      listed.set(`${r.application}\0${r.workstation}`, {
        workstation: r.workstation,
        cmids: [],
        ...(r.n > CMIDS_PER_NAME_KEPT ? { machines: r.n } : {}),
        application: r.application,
      });
    }
    if (listed.size > 0) {
      // The table is stored in (application, cmid) order: one pass gives each name its first CMIDs.
      const rows = this.db
        .prepare(`
          SELECT application, lower(workstation) AS workstation, cmid FROM clients
          WHERE ${served} AND application || char(0) || lower(workstation) IN (SELECT value FROM json_each(?))
          ORDER BY application, cmid`)
        .iterate(cutoff, JSON.stringify([...listed.keys()])) as IterableIterator<{
        application: string;
        workstation: string;
        cmid: string;
      }>;
      for (const r of rows) {
        const w = listed.get(`${r.application}\0${r.workstation}`);
        if (w !== undefined && w.cmids.length < CMIDS_PER_NAME_KEPT) w.cmids.push(r.cmid);
      }
    }
    const sharedWorkstations = [...listed.values()].map((w) => ({ ...w, application: this.names.applicationName(w.application) }));
    return { sharedWorkstations, sharedWorkstationsTotal: total };
  }

  /** The id of the first event at or after `ms` (events are appended in time order). */
  private firstEventAtOrAfter(ms: number): number {
    const bounds = this.db.prepare('SELECT MIN(id) AS lo, MAX(id) AS hi FROM events').get() as { lo: number | null; hi: number | null };
    if (bounds.lo === null || bounds.hi === null) return 0;
    const timeAtOrAfter = this.db.prepare('SELECT id, time_ms FROM events WHERE id >= ? ORDER BY id LIMIT 1');
    let lo = bounds.lo;
    let hi = bounds.hi + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const row = timeAtOrAfter.get(mid) as { id: number; time_ms: number } | undefined;
      if (row === undefined || row.time_ms >= ms) hi = mid;
      else lo = row.id + 1;
    }
    return lo;
  }

  /**
   * Active machines per (application, group, SKU) in the window. Hosts serve Activation IDs they do
   * not know, so a client inventing them makes a SKU per machine (half a million rows took 220 MB):
   * SKUs `keepSku` turns down are summed per group in one row whose skuId is OTHER_SKUS.
   */
  groupCounts(
    nowMs: number,
    windowMs: number = COUNT_WINDOW_MS,
    keepSku: (skuId: string, groupId: string) => boolean = () => true,
  ): GroupCount[] {
    const rows = this.db
      .prepare(`
        SELECT application, kms_group, sku, count(*) AS n FROM clients
        WHERE last_counted_ms >= ? GROUP BY application, kms_group, sku ORDER BY application, kms_group, sku`)
      .iterate(nowMs - windowMs) as IterableIterator<{ application: string; kms_group: string; sku: string; n: number }>;
    const out: GroupCount[] = [];
    let other: { applicationId: string; groupId: string; skuId: string; activeMachines: number } | undefined;
    const flush = (): void => {
      if (other !== undefined) out.push(other);
      other = undefined;
    };
    for (const r of rows) {
      if (other !== undefined && (other.applicationId !== r.application || other.groupId !== r.kms_group)) flush();
      if (keepSku(r.sku, r.kms_group)) {
        out.push({ applicationId: r.application, groupId: r.kms_group, skuId: r.sku, activeMachines: r.n });
        continue;
      }
      other ??= { applicationId: r.application, groupId: r.kms_group, skuId: OTHER_SKUS, activeMachines: 0 };
      other.activeMachines += r.n;
    }
    flush();
    return out;
  }

  get nameResolver(): NameResolver {
    return this.names;
  }

  private toRecord(r: StoredClientRow, cutoff: number): ClientRecord {
    return clientRecord(r, this.names, cutoff);
  }
}

/**
 * Gives a read-only connection the server's page cache (STORE_TUNING.cacheKiB) instead of
 * better-sqlite3's default of 16 MB. SQLite sizes its sorter by the same figure, so with a million
 * machines one summary (a GROUP BY over the window) grew the process by about 33 MB with the
 * default and by 4 MB with this, at the same speed (the pages come from the OS cache).
 */
export function boundReadCache(db: Database.Database): void {
  db.pragma(`cache_size = -${STORE_TUNING.cacheKiB}`);
}

/** An id matches itself exactly, or a name containing the text (case-insensitive). */
function matches(wanted: string, id: string, name: string): boolean {
  const w = wanted.trim().toLowerCase();
  return id === w || name.toLowerCase().includes(w);
}

function matcher(wanted: string | undefined, nameOf: (id: string) => string): (id: string) => boolean {
  if (wanted === undefined) return () => true;
  const memo = new Map<string, boolean>();
  return (id) => {
    let m = memo.get(id);
    if (m === undefined) memo.set(id, (m = matches(wanted, id, nameOf(id))));
    return m;
  };
}

function silenceClause(filter: ClientFilter): { where: string; params: unknown[] } {
  return filter.notSeenSinceMs === undefined
    ? { where: '', params: [] }
    : { where: 'WHERE last_seen_ms < ?', params: [filter.notSeenSinceMs] };
}

function distinct(joined: string): string[] {
  return [...new Set(joined.split('\n').filter((s) => s !== ''))].sort();
}

/** A clients row in the words the commands and the admin page show. */
export function clientRecord(r: StoredClientRow, names: NameResolver, cutoff: number): ClientRecord {
  return {
    applicationId: r.application,
    applicationName: names.applicationName(r.application),
    groupId: r.kms_group,
    groupName: names.groupName(r.kms_group),
    skuId: r.sku,
    skuName: names.skuName(r.sku, r.kms_group),
    cmid: r.cmid,
    workstation: r.workstation,
    address: r.client_address,
    firstSeenMs: r.first_seen_ms,
    lastSeenMs: r.last_seen_ms,
    lastCountedMs: r.last_counted_ms,
    active: r.last_counted_ms !== null && r.last_counted_ms >= cutoff,
    licenseStatus: r.license_status,
    vm: r.vm !== 0,
    protocolVersion: r.protocol_version,
    requests: r.requests,
    lastHresult: r.last_hresult,
    requiredCount: r.required_count,
  };
}

/**
 * The words for a clock correction while it matters: the 30 days the machines it moved stay in
 * the window. Before it, the counts included machines the wrong clock kept counting.
 */
export function clockCorrectionNote(c: ClockCorrection | undefined, nowMs: number): string | undefined {
  if (c === undefined || nowMs - c.correctedAtMs > COUNT_WINDOW_MS) return undefined;
  const at = (ms: number): string => `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  return (
    `Host clock: it had been set ahead (to about ${at(c.aheadUntilMs)}) and was found corrected at ` +
    `${at(c.correctedAtMs)}; the ${c.machines} machine${c.machines === 1 ? '' : 's'} seen meanwhile ` +
    `${c.machines === 1 ? 'counts' : 'count'} as seen then. Check the time source (timedatectl, chrony).`
  );
}

/** Odd requests listed per application; a client cycling through values would list a thousand. */
const UNUSUAL_REQUESTS_SHOWN = 5;

/**
 * What the administrator should know about the threshold beyond "N more machines": requests that
 * asked for another threshold than their products' clients do, and a count cap (PROTOCOL.md §7.2,
 * twice the largest RequiredClientCount served in 30 days) that such a request moved. Plain text,
 * the same words for `kms-appliance status` and the admin page.
 */
export function thresholdNotes(a: ApplicationSummary): string[] {
  const notes: string[] = [];
  const machines = (n: number): string => `${n} machine${n === 1 ? '' : 's'}`;
  for (const u of a.unusualRequests.slice(0, UNUSUAL_REQUESTS_SHOWN)) {
    notes.push(
      `${u.machines === 1 ? 'A request' : 'Requests'} asked for ${machines(u.requiredCount)}: ${machines(u.machines)} of ` +
        `${u.groupName}, whose clients ask for ${u.usual}; a misconfigured or forged client, not what is counted against.`,
    );
  }
  const more = a.unusualRequestKinds - Math.min(a.unusualRequests.length, UNUSUAL_REQUESTS_SHOWN);
  if (more > 0) notes.push(`${more} more odd thresholds were asked for (kms-appliance clients lists each machine's).`);
  if (a.largestRequested > a.threshold && !a.unusualRequests.some((u) => u.requiredCount === a.largestRequested)) {
    // The machine has asked again since, as its product does: the request is gone, its cap is not.
    notes.push(`A request asked for ${a.largestRequested} machines in the last 30 days; these products' clients ask for ${a.threshold}.`);
  }
  const capAtThreshold = 2 * a.threshold;
  if (a.threshold > 0 && a.largestRequested !== a.threshold && a.reportedCount !== Math.min(a.activeMachines, capAtThreshold)) {
    notes.push(
      `Clients are told ${a.reportedCount}, not ${Math.min(a.activeMachines, capAtThreshold)}: a host caps the count at twice the ` +
        `largest threshold asked in 30 days (${a.largestRequested}), not at twice what the products need.`,
    );
  }
  return notes;
}
