// Shared helpers for the store tests: observations with distinct CMIDs, temporary data dirs and a
// log recorder.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ClientObservation } from '../../src/host/ports';
import type { StoreLog } from '../../src/store/store-log';
import { NIL_GUID, WIN10_VOLUME_GROUP, WINDOWS_APP } from '../ids';

/** KMS groups and SKUs from data/kms-catalog.json that only the store tests use; the shared ones are in test/ids.ts. */
const WIN10_EDUCATION = 'e0c42288-980c-4788-a014-c080d2e1926e'; // Windows 10/11 Education
export const SERVER_2022_GROUP = 'b74263e4-0f92-46c6-bcf8-c11d5efe2959';
export const SERVER_2022_STANDARD = '9bd77860-9b31-4b7b-96ad-2564017315bf';
export const OFFICE_2019_GROUP = '617d9eb1-ef36-4f82-86e0-a65ae07b96c6';
export const OFFICE_2019_EXCEL = '237854e9-79fc-4497-a0c1-a70969691c6b';
export const DAY = 86_400_000;
export const WINDOW = 30 * DAY;

export function cmid(n: number, prefix = 'c'): string {
  const hex = n.toString(16).padStart(12, '0');
  const p = Buffer.from(prefix).toString('hex').padEnd(8, '0').slice(0, 8);
  return `${p}-0000-4000-8000-${hex}`;
}

export function obs(n: number, over: Partial<ClientObservation> = {}): ClientObservation {
  return {
    applicationId: WINDOWS_APP,
    kmsCountedId: WIN10_VOLUME_GROUP,
    activationId: WIN10_EDUCATION,
    clientMachineId: cmid(n),
    previousClientMachineId: NIL_GUID,
    workstationName: `pc-${n}.branch.example`,
    requiredClientCount: 25,
    licenseStatus: 2,
    vmInfo: 0,
    protocolVersion: 6,
    clientAddress: `10.0.${(n >> 8) & 255}.${n & 255}`,
    requestTimeMs: Date.UTC(2025, 0, 1),
    ...over,
  };
}

export function tempDataDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-store-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface LogLine {
  readonly level: 'info' | 'warn' | 'error';
  readonly obj: Record<string, unknown>;
  readonly msg: string;
}

export function recordingLog(): StoreLog & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }),
    error: (obj, msg) => lines.push({ level: 'error', obj: obj as Record<string, unknown>, msg }),
  };
}
