// /healthz and the page's banner: healthy only when clients can activate and counts are safe. Each
// problem is one sentence an administrator can act on; nothing about clients or inventory.
import type { MetricSources } from '../metrics/sources';

export interface HealthReport {
  readonly ok: boolean;
  readonly problems: readonly string[];
}

/** Registration may be this late past its refresh interval before it counts as failing (one retry). */
const REGISTRATION_GRACE_MS = 5 * 60_000;

export function checkHealth(sources: Pick<MetricSources, 'kms' | 'store' | 'registration' | 'fleet'>, nowMs: number): HealthReport {
  const problems: string[] = [];
  const kms = sources.kms();
  if (!kms.listening)
    problems.push(
      'The KMS listener is not accepting connections: clients cannot activate. Check the log for the listen error and restart the service.',
    );
  const store = sources.store();
  if (!store.writable) {
    problems.push(
      `The database cannot be written${store.lastError ? ` (${store.lastError})` : ''}: answered activations wait in memory. ` +
        'Free disk space or fix the file system.',
    );
  }
  if (store.machineCapReached) {
    problems.push(
      'store.maxMachines machines are stored, all counted in the last 30 days: machines the host has not seen before are refused ' +
        '(0xC004D104). Raise store.maxMachines if the site has that many; otherwise a client is inventing machine ids.',
    );
  }
  if (store.lastSyncError) {
    problems.push(
      `The disk did not confirm what was written (fsync failed: ${store.lastSyncError}): a power cut could lose recent activations. ` +
        'Check the disk (dmesg, SMART) and free space.',
    );
  }
  if (store.pendingWrites > 0) {
    problems.push(
      `${store.pendingWrites} machine${store.pendingWrites === 1 ? "'s answered activation is" : "s' answered activations are"} ` +
        'not yet written to the database; they are written as soon as the disk accepts them.',
    );
  } else if ((store.pendingEvents ?? 0) > 0) {
    problems.push(
      `${store.pendingEvents} request log entr${store.pendingEvents === 1 ? 'y is' : 'ies are'} not yet written to the database.`,
    );
  }
  const reg = sources.registration?.();
  if (reg) {
    // Before the first round has an outcome (the seconds after start) nothing has failed yet: a
    // monitor polling a box that just started must not page anyone. A round always ends (each
    // exchange has a timeout), and its failure counts.
    const late = reg.lastSuccessMs === null ? reg.failures > 0 : nowMs - reg.lastSuccessMs > reg.refreshMs + REGISTRATION_GRACE_MS;
    if (late) {
      const since =
        reg.lastSuccessMs === null ? 'has not succeeded since start' : `last succeeded ${new Date(reg.lastSuccessMs).toISOString()}`;
      problems.push(
        `DNS registration of _vlmcs._tcp ${since}${reg.lastError ? ` (${reg.lastError})` : ''}: new clients may not find this host. ` +
          "Check dns.registration and the DNS server's update policy (kms-appliance dns check).",
      );
    }
  }
  // Clients do not depend on fleet reporting, but head office does: a box that stopped reporting is
  // unhealthy to the monitoring that watches it.
  for (const p of sources.fleet?.().problems ?? []) problems.push(`${p.charAt(0).toUpperCase()}${p.slice(1)}.`);
  return { ok: problems.length === 0, problems };
}
