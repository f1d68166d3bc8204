// The database: opened first and closed last, so every other service can write to it until it stops.
import { STORE_TUNING, type AppConfig } from '../../config/defaults';
import type { Clock } from '../../host/ports';
import type { Logger } from '../../logging/logger';
import type { StoreFacts } from '../../metrics/sources';
import { SqliteStore } from '../../store/sqlite-store';
import { restartOnChange, type Service } from '../service';

export interface StoreService extends Service {
  readonly store: SqliteStore;
  /** The store's state as /metrics and /healthz read it. */
  facts(): StoreFacts;
}

// The appliance's clock: the prune and the clock correction must judge stored times by the same
// clock the requests were counted with.
export function storeService(config: AppConfig, dataDir: string, log: Logger, clock: Clock): StoreService {
  const store = SqliteStore.open(dataDir, {
    log,
    clock,
    eventRetentionDays: config.store.eventRetentionDays,
    maxEvents: config.store.maxEvents,
    maxMachines: config.store.maxMachines,
    pendingLimits: { maxMachines: config.store.pendingMachines, maxEvents: config.store.pendingEvents },
    backgroundCheckpointMs: STORE_TUNING.checkpointIntervalMs,
    journalCommitMs: STORE_TUNING.journalCommitMs,
  });
  return {
    name: 'store',
    store,
    facts: () => {
      const s = store.stats();
      return {
        pendingWrites: s.pendingMachines,
        pendingEvents: s.pendingEvents,
        writeFailures: s.writeFailures,
        writable: s.writable,
        machineCapReached: s.machineCapReached,
        lastError: s.lastWriteError ?? '',
        journalInUse: s.journalInUse,
        syncFailures: s.syncFailures,
        lastSyncError: s.lastSyncError ?? '',
      };
    },
    reload: restartOnChange('store', (c) => c.store),
    close: async () => {
      store.close();
      await store.whenStopped();
    },
  };
}
