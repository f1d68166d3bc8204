// Test helper: runs the real `dig` (bind9-dnsutils, installed by scripts/ci-apt.sh) and parses
// the parts of its output the DNS tests assert on.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** Finds a BIND tool in PATH or the sbin directories root's PATH may lack. */
function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/bin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function requireTool(name: string): string {
  const p = findTool(name);
  if (!p) throw new Error(`${name} not found: run scripts/ci-apt.sh (bind9, bind9-dnsutils)`);
  return p;
}

export interface DigResult {
  readonly raw: string;
  readonly status: string;
  readonly flags: readonly string[];
  /** Each record as its whitespace-separated fields: name ttl class type rdata… */
  readonly answer: readonly string[][];
  readonly authority: readonly string[][];
  readonly additional: readonly string[][];
  readonly ednsUdp: number | undefined;
  readonly tcp: boolean;
}

function parseDig(out: string): DigResult {
  const status = /status: ([A-Z]+)/.exec(out)?.[1] ?? 'NONE';
  const flags = (/;; flags: ([a-z ]*);/.exec(out)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
  const section = (title: string): string[][] => {
    const m = new RegExp(`;; ${title} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(out);
    if (!m) return [];
    return m[1]!
      .split('\n')
      .filter((l) => l && !l.startsWith(';'))
      .map((l) => l.trim().split(/\s+/));
  };
  const udp = /EDNS: version: \d+, flags:[^;]*; udp: (\d+)/.exec(out)?.[1];
  return {
    raw: out,
    status,
    flags,
    answer: section('ANSWER'),
    authority: section('AUTHORITY'),
    additional: section('ADDITIONAL'),
    ednsUdp: udp === undefined ? undefined : Number(udp),
    tcp: /\(TCP\)/.test(out),
  };
}

/** Runs dig against server:port with the given query options; never retries. */
export function dig(server: string, port: number, args: readonly string[]): Promise<DigResult> {
  const bin = requireTool('dig');
  return new Promise((resolve, reject) => {
    execFile(bin, [`@${server}`, '-p', String(port), '+tries=1', '+time=3', ...args], { timeout: 15_000 }, (err, stdout) => {
      // dig exits 9 when there is no answer; the caller asserts on the parsed result.
      if (err && stdout === '') return reject(err);
      resolve(parseDig(stdout));
    });
  });
}
