// Reporting into the organisation's PostgreSQL. Loaded only when enabled: a box that does not
// report never loads pg. The forwarder works on a timer, off the request path; a database that is
// down or slow costs clients nothing.
import type { Catalog } from '../../catalog/catalog';
import type { AppConfig } from '../../config/defaults';
import type { FleetHealth } from '../../fleet/forwarder';
import type { Clock } from '../../host/ports';
import type { Logger } from '../../logging/logger';
import type { SqliteStore } from '../../store/sqlite-store';
import { restartOnChange, type Service } from '../service';

export interface FleetService extends Service {
  /** Fleet reporting's state for /healthz and status; absent while fleet.postgres.enabled is false. */
  readonly health?: () => FleetHealth;
}

export interface FleetServiceDeps {
  readonly store: SqliteStore;
  readonly catalog: Catalog;
  readonly log: Logger;
  readonly clock: Clock;
  readonly hostName: string;
}

export function fleetService(config: AppConfig, deps: FleetServiceDeps): FleetService {
  const reload = restartOnChange('fleet', (c) => c.fleet);
  if (!config.fleet.postgres.enabled) return { name: 'fleet', reload, close: async () => undefined };
  const { FleetForwarder } = require('../../fleet/forwarder') as typeof import('../../fleet/forwarder');
  const { catalogNames } = require('../../catalog/names') as typeof import('../../catalog/names');
  const { VERSION } = require('../../version') as typeof import('../../version');
  const { store, catalog, log, clock, hostName } = deps;
  const fleet = new FleetForwarder({
    outbox: store.fleetOutbox(),
    fleet: config.fleet,
    log,
    names: catalogNames(catalog),
    softwareVersion: VERSION,
    clock,
    hostName,
  });
  fleet.start();
  return { name: 'fleet', health: () => fleet.health(), reload, close: () => fleet.stop() };
}
