// `npm run test:fuzz [-- --seconds S | --minutes M] [--seed N] [--targets kms,dns,http]`: a seeded
// fuzzing campaign over loopback. It starts one appliance in-process with the KMS listener, a DNS
// responder (UDP and TCP, one zone) and the admin listener, then alternates rounds of hostile input
// between the targets (test/fuzz/*-target.ts, one FuzzTarget each) and after every round asks each
// target whether a well-behaved client is still served. It prints how many inputs it sent, the
// crashes (an uncaught error; the process dying is one too, seen by whoever ran it), the findings
// (a failed health check, with the round to replay) and the peak RSS. Exit 0 only with neither.
// Replay a run with the seed it prints: node dist/test/fuzz/loopback-fuzz.js --seed N.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startAppliance, type Appliance } from '../../src/cli/appliance';
import { DEFAULTS, type AppConfig } from '../../src/config/defaults';
import { formatListenAddress } from '../../src/config/listen-address';
import { createLogger } from '../../src/logging/logger';
import { kmsFuzzTarget } from './kms-target';
import type { FuzzTarget } from './target';
import { seededRandom as prng } from '../prng';

const ZONE = 'fuzz.test';

export interface CampaignOptions {
  readonly seed: number;
  readonly seconds: number;
  /** Rounds run even past `seconds` (the smoke test: every target at least once, however busy the machine). */
  readonly minRounds?: number;
  /** Target names to attack; default every target whose module is present. */
  readonly targets?: readonly string[];
  /** Progress lines (every 30 s) and the summary go here. */
  readonly out?: (line: string) => void;
}

export interface CampaignReport {
  readonly seed: number;
  readonly rounds: number;
  readonly inputs: number;
  readonly inputsByTarget: Readonly<Record<string, number>>;
  readonly crashes: readonly string[];
  readonly findings: readonly string[];
  readonly peakRssBytes: number;
  readonly targets: readonly string[];
  /** Targets asked for (or expected) whose module could not be loaded, with why. */
  readonly missing: readonly string[];
}

function fuzzConfig(dataDir: string): AppConfig {
  const config = structuredClone(DEFAULTS) as { -readonly [K in keyof AppConfig]: any };
  config.kms.listen = ['127.0.0.1:0'];
  config.kms.idleTimeoutSeconds = 2;
  config.dns.listen = ['127.0.0.1:0'];
  config.dns.zones = [{ domain: ZONE, ttlSeconds: 60, hosts: [] }];
  config.admin.listen = ['127.0.0.1:0'];
  config.store.dataDir = dataDir;
  return config as AppConfig;
}

/** A target module written beside this one, loaded only if it is there (and compiles). */
function optionalTarget<T>(module: string, exportName: string, missing: string[]): T | undefined {
  try {
    const loaded = require(module) as Record<string, unknown>;
    const factory = loaded[exportName];
    if (typeof factory !== 'function') throw new Error(`${module} does not export ${exportName}`);
    return factory as T;
  } catch (err) {
    missing.push(`${module}: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

function buildTargets(appliance: Appliance, missing: string[]): FuzzTarget[] {
  const targets: FuzzTarget[] = [kmsFuzzTarget({ host: '127.0.0.1', port: appliance.kmsAddresses[0]!.port })];
  const dns = appliance.dnsAddresses[0];
  const dnsTarget = optionalTarget<(o: { host: string; port: number; zone: string }) => FuzzTarget>(
    './dns-target',
    'dnsFuzzTarget',
    missing,
  );
  if (dns && dnsTarget) targets.push(dnsTarget({ host: '127.0.0.1', port: dns.port, zone: ZONE }));
  const admin = appliance.adminAddresses[0];
  const httpTarget = optionalTarget<(o: { host: string; port: number }) => FuzzTarget>('./http-target', 'httpFuzzTarget', missing);
  if (admin && httpTarget) targets.push(httpTarget({ host: '127.0.0.1', port: admin.port }));
  return targets;
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignReport> {
  const out = options.out ?? (() => {});
  const crashes: string[] = [];
  const findings: string[] = [];
  const missing: string[] = [];
  // Anything thrown outside the targets' own handling is a crash of the host (it shares the process).
  const onCrash = (err: unknown): void => {
    crashes.push((err as Error)?.stack ?? String(err));
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 200);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-fuzz-'));
  const rnd = prng(options.seed);
  const inputsByTarget: Record<string, number> = {};
  let rounds = 0;
  let appliance: Appliance | undefined;
  let targets: FuzzTarget[] = [];
  try {
    appliance = await startAppliance(fuzzConfig(dataDir), { log: createLogger({ level: 'silent' }) });
    targets = buildTargets(appliance, missing).filter((t) => !options.targets || options.targets.includes(t.name));
    out(
      `fuzz: seed ${options.seed}, ${options.seconds} s, targets ${targets.map((t) => t.name).join(', ')}` +
        ` (kms ${formatListenAddress(appliance.kmsAddresses[0]!)}` +
        (appliance.dnsAddresses[0] ? `, dns ${formatListenAddress(appliance.dnsAddresses[0])}` : '') +
        (appliance.adminAddresses[0] ? `, admin ${formatListenAddress(appliance.adminAddresses[0])}` : '') +
        `); replay with --seed ${options.seed}`,
    );
    for (const m of missing) out(`fuzz: target not loaded: ${m}`);
    const started = Date.now();
    const deadline = started + options.seconds * 1000;
    let nextProgress = started + 30_000;
    while ((Date.now() < deadline || rounds < (options.minRounds ?? 0)) && crashes.length === 0) {
      const target = targets[rounds % targets.length]!;
      inputsByTarget[target.name] = (inputsByTarget[target.name] ?? 0) + (await target.round(rnd));
      for (const t of targets) {
        if (!(await t.healthy())) findings.push(`round ${rounds} (after ${target.name}): ${t.name} did not serve a well-behaved client`);
      }
      rounds++;
      if (Date.now() >= nextProgress) {
        nextProgress += 30_000;
        out(
          `fuzz: ${Math.round((Date.now() - started) / 1000)} s, ${total(inputsByTarget)} inputs, ${rounds} rounds, ` +
            `${findings.length} findings, RSS ${mb(peakRss)} MB peak`,
        );
      }
    }
  } finally {
    await appliance?.stop().catch(onCrash);
    clearInterval(sampler);
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  // resourceUsage().maxRSS is the kernel's high-water mark (KiB), which catches peaks between samples.
  peakRss = Math.max(peakRss, process.resourceUsage().maxRSS * 1024);
  return {
    seed: options.seed,
    rounds,
    inputs: total(inputsByTarget),
    inputsByTarget,
    crashes,
    findings,
    peakRssBytes: peakRss,
    targets: targets.map((t) => t.name),
    missing,
  };
}

function total(byTarget: Record<string, number>): number {
  return Object.values(byTarget).reduce((a, b) => a + b, 0);
}

function mb(bytes: number): string {
  return (bytes / 1048576).toFixed(0);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { seed: { type: 'string' }, seconds: { type: 'string' }, minutes: { type: 'string' }, targets: { type: 'string' } },
  });
  const seed = Number(values.seed ?? Math.floor(Math.random() * 2 ** 31));
  const seconds = values.minutes !== undefined ? Number(values.minutes) * 60 : Number(values.seconds ?? 30);
  if (!Number.isFinite(seed) || !(seconds > 0))
    throw new Error('usage: loopback-fuzz [--seed N] [--seconds S | --minutes M] [--targets kms,dns,http]');
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  const report = await runCampaign({ seed, seconds, targets: values.targets?.split(','), out });
  const per = Object.entries(report.inputsByTarget)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  out(
    `fuzz: ${report.inputs} inputs sent (${per}) in ${report.rounds} rounds; ${report.crashes.length} crashes; ` +
      `${report.findings.length} findings; peak RSS ${mb(report.peakRssBytes)} MB; seed ${seed}`,
  );
  for (const c of report.crashes) out(`crash: ${c}`);
  for (const f of report.findings.slice(0, 20)) out(`finding: ${f}`);
  const failed = report.crashes.length > 0 || report.findings.length > 0;
  out(failed ? '0 passed, 1 failed' : '1 passed, 0 failed');
  process.exitCode = failed ? 1 : 0;
  // A socket a target left behind must not keep a finished campaign running.
  setTimeout(() => process.exit(), 2000).unref();
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`fuzz failed: ${(err as Error).stack ?? String(err)}\n0 passed, 1 failed\n`);
    process.exitCode = 1;
  });
}
