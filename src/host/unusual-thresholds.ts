// The log side of a RequiredClientCount that differs from what the catalogue says a KMS group's
// clients send: the host serves it as PROTOCOL.md §7.2 says, the admin figures count against the
// catalogue (store/inventory.ts), and the administrator reads one line per group and value.
import type { ActivationOutcome } from './outcome';

/** Group and value pairs logged; a client cycling through 1 … 1000 over every group stops here. */
const MAX_LOGGED = 64;

export interface WarnLog {
  warn(obj: object, msg: string): void;
}

/** The ActivationDeps.onUnusualThreshold hook: a warning the first time each (group, value) is served. */
export function unusualThresholdLogger(log: WarnLog, maxLogged: number = MAX_LOGGED): (o: ActivationOutcome, usual: number) => void {
  const logged = new Set<string>();
  return (o, usual) => {
    if (logged.size > maxLogged) return;
    const asked = Math.max(1, o.requiredClientCount ?? 0);
    const key = `${o.kmsCountedId ?? ''}/${asked}`;
    if (logged.has(key)) return;
    logged.add(key);
    if (logged.size > maxLogged) {
      log.warn(
        { logged: maxLogged },
        `${maxLogged} unusual thresholds were logged; further ones are not (kms-appliance status names them)`,
      );
      return;
    }
    log.warn(
      {
        application: o.applicationName,
        group: o.productGroupName,
        requiredClientCount: o.requiredClientCount,
        usual,
        cmid: o.clientMachineId,
        workstation: o.workstationName,
        address: o.clientAddress,
      },
      `A client asked for ${asked} machine${asked === 1 ? '' : 's'} for ${o.productGroupName ?? 'its product'}, whose clients ` +
        `ask for ${usual}: a misconfigured or forged client. It is told the count as usual; what the administrator is shown ` +
        `as needed stays ${usual}. Logged once per product group and value.`,
    );
  };
}
