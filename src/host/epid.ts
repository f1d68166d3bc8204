// The extended product id a host sends in every response (PROTOCOL.md §7.4):
// PPPPP-GGGGG-KKK-KKKKKK-03-LLLL-BBBBB.0000-DDDYYYY. Parsing, formatting and generation.
import type { HostBuild, HostKeyGroup } from '../catalog/types';
import type { RandomBytes } from './ports';

/** §7.4 shape check; day of year and year are checked separately (parseEpid). */
export const EPID_SHAPE = /^([0-9]{5})-([0-9]{5})-([0-9]{3})-([0-9]{6})-03-([0-9]{4,5})-([0-9]{4,5})\.0000-([0-9]{3})([0-9]{4})$/;

/** Channel 03 = volume licence, the only one a KMS host key has. */
const EPID_CHANNEL = '03';

const DAY_MS = 86_400_000;

export interface EpidParts {
  readonly platformId: number;
  readonly groupId: number;
  /** 0 … 999 999 999, printed as KKK-KKKKKK. */
  readonly keyId: number;
  readonly lcid: number;
  readonly build: number;
  /** 1 … 365 (366 in leap years). */
  readonly dayOfYear: number;
  readonly year: number;
}

function isLeap(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

/** The parts of a well-formed ePID, or undefined when it breaks §7.4's form. */
export function parseEpid(epid: string): EpidParts | undefined {
  const m = EPID_SHAPE.exec(epid);
  if (m === null) return undefined;
  const [, p, g, k1, k2, l, b, d, y] = m as unknown as [string, string, string, string, string, string, string, string, string];
  const year = Number(y);
  const dayOfYear = Number(d);
  if (year < 1990 || dayOfYear < 1 || dayOfYear > (isLeap(year) ? 366 : 365)) return undefined;
  return {
    platformId: Number(p),
    groupId: Number(g),
    keyId: Number(k1) * 1_000_000 + Number(k2),
    lcid: Number(l),
    build: Number(b),
    dayOfYear,
    year,
  };
}

export function formatEpid(parts: EpidParts): string {
  const pad = (n: number, w: number): string => String(n).padStart(w, '0');
  return (
    `${pad(parts.platformId, 5)}-${pad(parts.groupId, 5)}-` +
    `${pad(Math.floor(parts.keyId / 1_000_000), 3)}-${pad(parts.keyId % 1_000_000, 6)}-${EPID_CHANNEL}-` +
    `${parts.lcid}-${parts.build}.0000-${pad(parts.dayOfYear, 3)}${pad(parts.year, 4)}`
  );
}

/** The ePID date as UTC midnight of that day. */
export function epidDateMs(parts: Pick<EpidParts, 'dayOfYear' | 'year'>): number {
  return Date.UTC(parts.year, 0, 1) + (parts.dayOfYear - 1) * DAY_MS;
}

function dayParts(ms: number): { dayOfYear: number; year: number } {
  const year = new Date(ms).getUTCFullYear();
  return { year, dayOfYear: Math.floor((ms - Date.UTC(year, 0, 1)) / DAY_MS) + 1 };
}

/**
 * The earliest date the ePID may name: not before the build's release, not before the host-key
 * group's releaseDate when the catalogue has one (§7.4). UTC midnight; undefined when neither is known.
 */
export function earliestEpidDateMs(hostBuild: HostBuild, group: HostKeyGroup): number | undefined {
  const dates = [hostBuild.releaseDate, group.releaseDate].filter((d): d is string => typeof d === 'string').map((d) => Date.parse(d));
  return dates.length === 0 ? undefined : Math.max(...dates);
}

/** A uniformly random integer in [min, max], both ends inclusive (rejection sampling, no modulo bias). */
export function randomIntInclusive(min: number, max: number, randomBytes: RandomBytes): number {
  const span = max - min + 1;
  if (!Number.isSafeInteger(span) || span < 1 || span > 2 ** 48) throw new RangeError(`bad range ${min} … ${max}`);
  const limit = Math.floor(2 ** 48 / span) * span;
  let v = randomBytes(6).readUIntBE(0, 6);
  // A broken (or fake) source that never yields an accepted value must not hang the host;
  // after 64 rejections the bias of one modulo is below 2^-40 for every range here anyway.
  for (let tries = 0; v >= limit && tries < 64; tries++) v = randomBytes(6).readUIntBE(0, 6);
  return min + (v % span);
}

export interface EpidRequest {
  readonly hostBuild: HostBuild;
  readonly group: HostKeyGroup & { readonly groupId: number; readonly minKeyId: number; readonly maxKeyId: number };
  readonly lcid: number;
  readonly nowMs: number;
  readonly randomBytes: RandomBytes;
}

/** A fresh ePID: random key id in the group's inclusive range, random date from the earliest allowed day to today. */
export function generateEpid(req: EpidRequest): string {
  const today = Math.floor(req.nowMs / DAY_MS);
  const earliest = earliestEpidDateMs(req.hostBuild, req.group);
  // Never in the future: a host clock before the release date yields today (§7.4).
  const first = earliest === undefined ? today : Math.min(Math.floor(earliest / DAY_MS), today);
  const day = randomIntInclusive(first, today, req.randomBytes);
  return formatEpid({
    platformId: req.hostBuild.platformId,
    groupId: req.group.groupId,
    keyId: randomIntInclusive(req.group.minKeyId, req.group.maxKeyId, req.randomBytes),
    lcid: req.lcid,
    build: req.hostBuild.build,
    ...dayParts(day * DAY_MS),
  });
}
