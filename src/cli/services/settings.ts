// What the appliance reads live from its configuration rather than from a server: the log level,
// and the entitlements (`appliance.config`, which the admin page and reports read).
import type { Logger } from '../../logging/logger';
import type { Service } from '../service';

export function settingsService(log: Logger): Service {
  return {
    name: 'settings',
    reload(next) {
      log.level = next.log.level;
      return { applied: ['entitlements', 'log.level'], needsRestart: [] };
    },
    close: async () => undefined,
  };
}
