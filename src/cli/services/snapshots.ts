// The admin page and /metrics read the database in a worker thread with its own connection, never
// on the KMS event loop (a million clients take seconds to summarise).
import type { SnapshotService } from '../../admin/snapshot-service';
import type { AppConfig } from '../../config/defaults';
import type { Logger } from '../../logging/logger';
import { NOTHING_APPLIED, type Service } from '../service';

export interface SnapshotsService extends Service {
  readonly snapshots: SnapshotService;
}

export function snapshotsService(config: AppConfig, dataDir: string, log: Logger, now: () => number): SnapshotsService {
  const { SnapshotService: Snapshots } = require('../../admin/snapshot-service') as typeof import('../../admin/snapshot-service');
  const snapshots = new Snapshots({ dataDir, catalogFile: config.catalog.file }, log, now);
  // Its data directory and catalogue are the store's and the KMS service's keys: nothing of its own to reload.
  return { name: 'snapshots', snapshots, reload: () => NOTHING_APPLIED, close: () => snapshots.close() };
}
