// The admin page, JSON API and /metrics. Loaded only when admin.listen names a listener.
import type { AdminDeps, AdminHandle } from '../../admin/admin-service';
import type { AppConfig } from '../../config/defaults';
import type { ListenAddress } from '../../config/listen-address';
import { changedKeys, type Service } from '../service';

export interface AdminService extends Service {
  /** The listeners' router (tests inject requests without sockets); absent when admin.listen is empty. */
  readonly handle: AdminHandle | undefined;
  addresses(): readonly ListenAddress[];
}

export async function adminService(
  config: AppConfig,
  listen: readonly ListenAddress[],
  deps: Omit<AdminDeps, 'config'>,
): Promise<AdminService> {
  // Entitlements and a renewed certificate apply (admin.reload); the listeners and the rest wait for a restart.
  const needsRestart = (next: AppConfig, running: AppConfig): string[] => changedKeys('admin', running.admin, next.admin);
  if (listen.length === 0) {
    const reload: Service['reload'] = (next, running) => ({ applied: [], needsRestart: needsRestart(next, running) });
    return { name: 'admin', handle: undefined, addresses: () => [], reload, close: async () => undefined };
  }
  const { startAdmin } = require('../../admin/admin-service') as typeof import('../../admin/admin-service');
  const admin = await startAdmin(listen, { config, ...deps });
  return {
    name: 'admin',
    handle: admin,
    addresses: () => admin.addresses,
    reload: (next, running) => ({ applied: admin.reload(next), needsRestart: needsRestart(next, running) }),
    close: () => admin.close(),
  };
}
