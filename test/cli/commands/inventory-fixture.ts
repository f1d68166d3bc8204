// A prepared data directory for the status/clients/report command tests, with times relative to
// the real clock (the commands read Date.now()), and an in-memory CommandIo.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import type { CommandIo } from '../../../src/cli/command';
import { SqliteStore } from '../../../src/store/sqlite-store';
import { DAY, obs, OFFICE_2019_EXCEL, OFFICE_2019_GROUP, SERVER_2022_GROUP, SERVER_2022_STANDARD, WINDOW } from '../../store/observations';
import { OFFICE_2013_APP } from '../../ids';

const server = { kmsCountedId: SERVER_2022_GROUP, activationId: SERVER_2022_STANDARD, requiredClientCount: 5 };
const office = {
  applicationId: OFFICE_2013_APP,
  kmsCountedId: OFFICE_2019_GROUP,
  activationId: OFFICE_2019_EXCEL,
  requiredClientCount: 5,
};

/**
 * 20 Windows 10/11 clients and 3 Windows Server 2022 (23 of the 25 Windows clients need), 6 Office
 * 2019 installs, 2 Windows clients silent for 40 days, one machine cloned without sysprep (CMID 1
 * also answers as "clone-b"), one refused machine.
 */
export function preparedDataDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-cli-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const now = Date.now();
  const store = SqliteStore.open(dir, {});
  for (let i = 1; i <= 20; i++) store.recordActivation(obs(i), now - i * 3600_000, WINDOW);
  for (let i = 21; i <= 23; i++) store.recordActivation(obs(i, server), now - DAY, WINDOW);
  for (let i = 1; i <= 6; i++) store.recordActivation(obs(i, office), now - 2 * DAY, WINDOW);
  for (let i = 90; i <= 91; i++) store.recordActivation(obs(i), now - 40 * DAY, WINDOW);
  store.recordActivation(obs(1, { workstationName: 'clone-b' }), now - 1000, WINDOW);
  store.recordActivation(obs(1), now - 500, WINDOW);
  store.recordRefusal(obs(50, { workstationName: 'skewed, "clock"' }), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', now - 100);
  store.close();
  return dir;
}

export interface Captured {
  readonly io: CommandIo;
  stdout(): string;
  stderr(): string;
}

export function captureIo(env: NodeJS.ProcessEnv = {}): Captured {
  const out: string[] = [];
  const err: string[] = [];
  const collect = (sink: string[]): Writable =>
    new Writable({
      write(chunk: Buffer, _enc, done) {
        sink.push(chunk.toString('utf8'));
        done();
      },
    });
  return {
    io: { stdout: collect(out), stderr: collect(err), env },
    stdout: () => out.join(''),
    stderr: () => err.join(''),
  };
}

export function writeConfig(t: { teardown(fn: () => void): void }, yaml: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-cli-config-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, yaml);
  return file;
}
