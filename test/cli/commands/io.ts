// A CommandIo that collects what a command writes, for the CLI tests of config and client-config.
import { Writable } from 'node:stream';
import type { CommandIo } from '../../../src/cli/command';

export function captureIo(): CommandIo & { out(): string; err(): string } {
  const collect = (sink: string[]) =>
    new Writable({
      write(chunk: Buffer, _enc, done) {
        sink.push(chunk.toString('utf8'));
        done();
      },
    });
  const out: string[] = [];
  const err: string[] = [];
  return { stdout: collect(out), stderr: collect(err), env: {}, out: () => out.join(''), err: () => err.join('') };
}
