// An ActivationStore in memory: the reference semantics of counting (PROTOCOL.md §7.2) that the
// SQLite store must match, and the store of tests and of `--no-store` style runs.
import { NIL_GUID } from '../protocol/guid';
import { effectiveRequiredCount, isInsideWindow } from './counting';
import type { ActivationStore, ClientObservation, CountSnapshot } from './ports';

export interface MachineRecord {
  readonly applicationId: string;
  readonly clientMachineId: string;
  readonly firstSeenMs: number;
  /** Host time of the latest counted request; never moves backwards. */
  readonly lastCountedMs: number;
  readonly lastObservation: ClientObservation;
}

export interface StoredEvent {
  readonly kind: 'activation' | 'refusal';
  readonly nowMs: number;
  readonly hresult: number;
  readonly code?: string;
  readonly observation: Partial<ClientObservation>;
}

interface ApplicationState {
  readonly machines: Map<string, MachineRecord>;
  /** RequiredClientCount → host time it was last served; a handful of values per application. */
  readonly thresholds: Map<number, number>;
}

export class MemoryActivationStore implements ActivationStore {
  private readonly applications = new Map<string, ApplicationState>();
  private readonly settings = new Map<string, string>();
  private readonly log: StoredEvent[] = [];

  /** `maxEvents` bounds the event log so a long-running host does not grow without limit. */
  constructor(private readonly maxEvents = 10_000) {}

  recordActivation(obs: ClientObservation, nowMs: number, windowMs: number): CountSnapshot {
    const app = this.application(obs.applicationId);
    const cmid = obs.clientMachineId.toLowerCase();
    const previous = obs.previousClientMachineId.toLowerCase();
    let known = app.machines.get(cmid);

    // A re-imaged machine names its old CMID; it replaces that entry so it counts once (§7.2, U4).
    if (previous !== NIL_GUID && previous !== cmid) {
      const old = app.machines.get(previous);
      if (old !== undefined) {
        app.machines.delete(previous);
        if (known === undefined) known = old;
      }
    }

    app.machines.set(cmid, {
      applicationId: obs.applicationId.toLowerCase(),
      clientMachineId: cmid,
      firstSeenMs: known === undefined ? nowMs : Math.min(known.firstSeenMs, nowMs),
      // max(): a host clock that jumps back must not move a client out of (or back into) the window.
      lastCountedMs: known === undefined ? nowMs : Math.max(known.lastCountedMs, nowMs),
      lastObservation: obs,
    });
    const threshold = effectiveRequiredCount(obs.requiredClientCount);
    app.thresholds.set(threshold, Math.max(app.thresholds.get(threshold) ?? nowMs, nowMs));
    this.remember({ kind: 'activation', nowMs, hresult: 0, observation: obs });
    return this.snapshot(obs.applicationId, nowMs, windowMs);
  }

  acceptsActivation(): boolean {
    return true; // memory is the store: nothing waits for a disk
  }

  recordRefusal(obs: Partial<ClientObservation>, hresult: number, code: string, nowMs: number): void {
    // Refusals are logged only: they never touch the machines or thresholds that counting reads (C30).
    this.remember({ kind: 'refusal', nowMs, hresult, code, observation: obs });
  }

  getSetting(key: string): string | undefined {
    return this.settings.get(key);
  }

  setSetting(key: string, value: string): void {
    this.settings.set(key, value);
  }

  /** The counting window of an application as it stands at `nowMs`, without recording anything. */
  snapshot(applicationId: string, nowMs: number, windowMs: number): CountSnapshot {
    const app = this.applications.get(applicationId.toLowerCase());
    if (app === undefined) return { activeClients: 0, maxRequiredClientCount: 1 };
    let activeClients = 0;
    for (const m of app.machines.values()) if (isInsideWindow(m.lastCountedMs, nowMs, windowMs)) activeClients++;
    let maxRequiredClientCount = 1;
    for (const [threshold, lastMs] of app.thresholds) {
      if (threshold > maxRequiredClientCount && isInsideWindow(lastMs, nowMs, windowMs)) maxRequiredClientCount = threshold;
    }
    return { activeClients, maxRequiredClientCount };
  }

  machine(applicationId: string, clientMachineId: string): MachineRecord | undefined {
    return this.applications.get(applicationId.toLowerCase())?.machines.get(clientMachineId.toLowerCase());
  }

  /** Every recorded request, served and refused, oldest first. */
  get events(): readonly StoredEvent[] {
    return this.log;
  }

  private remember(e: StoredEvent): void {
    this.log.push(e);
    // Trim in batches: dropping one entry per push would copy the whole array every time.
    if (this.log.length >= 2 * this.maxEvents) this.log.splice(0, this.log.length - this.maxEvents);
  }

  private application(applicationId: string): ApplicationState {
    const key = applicationId.toLowerCase();
    let app = this.applications.get(key);
    if (app === undefined) {
      app = { machines: new Map(), thresholds: new Map() };
      this.applications.set(key, app);
    }
    return app;
  }
}
