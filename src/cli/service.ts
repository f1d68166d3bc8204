// The one shape every long-running part of the appliance has (the KMS listener, the DNS responder,
// registration, mDNS, fleet reporting, the admin page, the store), and the stack that starts them
// in order, reloads each with its own configuration section and closes them in reverse.
import { isDeepStrictEqual } from 'node:util';
import type { AppConfig } from '../config/defaults';
import type { ListenAddress } from '../config/listen-address';
import type { Logger } from '../logging/logger';

/** What one service did with a new configuration: what it applied, which keys wait for a restart. */
export interface ReloadOutcome {
  readonly applied: readonly string[];
  readonly needsRestart: readonly string[];
}

export interface Service {
  readonly name: string;
  /** Where it listens, port 0 resolved; absent for a service that owns no listener. */
  addresses?(): readonly ListenAddress[];
  /**
   * Applies what it can of its own section of `next` (`running` is the configuration in force). It
   * may refuse the configuration by throwing, but only before it has changed anything: the stack
   * reloads in start order, so a service that can refuse starts before those that apply something.
   */
  reload(next: AppConfig, running: AppConfig): ReloadOutcome;
  close(): Promise<void>;
}

export const NOTHING_APPLIED: ReloadOutcome = { applied: [], needsRestart: [] };

/**
 * The keys of one configuration section that differ between two configurations, named by their
 * path (`dns.zones`); `only` limits the comparison to those keys.
 */
export function changedKeys<T extends object>(path: string, before: T, after: T, only?: readonly (keyof T & string)[]): string[] {
  const b = before as Record<string, unknown>;
  const a = after as Record<string, unknown>;
  const keys = only ?? [...new Set([...Object.keys(b), ...Object.keys(a)])];
  return keys.filter((k) => !isDeepStrictEqual(b[k], a[k])).map((k) => `${path}.${k}`);
}

/** For a service that applies nothing on reload: every change to its section waits for a restart. */
export function restartOnChange(path: string, section: (c: AppConfig) => object): Service['reload'] {
  return (next, running) => ({ applied: [], needsRestart: changedKeys(path, section(running), section(next)) });
}

/** Running services, in the order they started, and the configuration they run with. */
export class ServiceStack {
  private readonly running: Service[] = [];
  private current: AppConfig;

  constructor(
    config: AppConfig,
    private readonly log: Logger,
  ) {
    this.current = config;
  }

  /** The configuration of the last reload that went through (the one started with before any). */
  get config(): AppConfig {
    return this.current;
  }

  /** Starts one service after those already running; a factory that throws leaves nothing behind. */
  async start<S extends Service>(factory: () => S | Promise<S>): Promise<S> {
    const service = await factory();
    this.running.push(service);
    return service;
  }

  /** Each service's own outcome, in start order, joined into one report; `next` is then in force. */
  reload(next: AppConfig): ReloadOutcome {
    const applied: string[] = [];
    const needsRestart: string[] = [];
    for (const service of this.running) {
      const outcome = service.reload(next, this.current);
      applied.push(...outcome.applied);
      needsRestart.push(...outcome.needsRestart);
    }
    this.current = next;
    return { applied, needsRestart };
  }

  /** Closes every service, the last started first; one that fails to close is logged and the rest still close. */
  async close(): Promise<void> {
    await this.closeAll((err) => this.log.error({ err }, 'error while stopping'));
  }

  /** After a failed start: closes what already started, quietly (the start error is the one worth reporting). */
  async abandon(): Promise<void> {
    await this.closeAll(() => undefined);
  }

  private async closeAll(onError: (err: unknown) => void): Promise<void> {
    while (this.running.length > 0) {
      const service = this.running.pop()!;
      try {
        await service.close();
      } catch (err) {
        onError(err);
      }
    }
  }
}
