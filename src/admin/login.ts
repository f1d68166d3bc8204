// Who may use the admin listeners once a password is set: HTTP Basic (curl, Prometheus) or a
// session cookie from the login form (browsers). Failed logins are slowed per address (an IPv6
// client per /64, which one machine can fill) and logged with the address.
import { createHmac, randomBytes } from 'node:crypto';
import net from 'node:net';
import { LineBudget } from '../logging/line-budget';
import { unmapIPv4 } from '../net/mapped-ipv4';
import { verifyPassword, type PasswordRecord } from './password';

export const SESSION_COOKIE = 'kms_admin_session';
/** A browser session lasts a working day; the page asks again after that. */
const SESSION_TTL_MS = 12 * 3_600_000;
const MAX_SESSIONS = 1000;
/** Failures an address may make before it waits; the wait doubles up to LOCKOUT_MAX_MS. */
const FREE_FAILURES = 5;
const LOCKOUT_BASE_MS = 30_000;
const LOCKOUT_MAX_MS = 15 * 60_000;
/** Forget an address's failures after this long without one. */
const FAILURE_MEMORY_MS = 60 * 60_000;
const MAX_TRACKED_ADDRESSES = 10_000;
/**
 * Failed password checks from all addresses together after which every address waits until the
 * oldest of them is GLOBAL_WINDOW_MS old. Each address has its free failures and its lockout, but
 * an attacker with many addresses (an IPv6 prefix holds millions of /64s, and beyond
 * MAX_TRACKED_ADDRESSES the oldest are forgotten) would multiply them: this bounds the guesses to
 * 20 per 5 minutes whatever the addresses. Sessions and remembered Basic credentials still work.
 */
const GLOBAL_FAILURES = 20;
const GLOBAL_WINDOW_MS = 5 * 60_000;
/** Verified credentials are remembered this long for their address, so a scraper does not cost a scrypt per scrape. */
const BASIC_CACHE_MS = 5 * 60_000;

export interface LoginLog {
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
}

export type AuthResult =
  | { readonly ok: true; readonly via: 'none' | 'basic' | 'session' }
  | {
      readonly ok: false;
      readonly reason: 'missing' | 'wrong' | 'throttled';
      readonly retryAfterSeconds?: number;
      /** A throttle for every address (GLOBAL_FAILURES), not this one's lockout. */
      readonly everyone?: boolean;
    };

interface FailureState {
  failures: number;
  lockedUntil: number;
  last: number;
}

/** The address key failures are counted under: IPv4 as is, IPv6 by its /64. */
export function throttleKey(address: string): string {
  const a = unmapIPv4(address);
  if (!net.isIPv6(a)) return a;
  const full = expandIpv6(a);
  return full.slice(0, 4).join(':') + '::/64';
}

function expandIpv6(a: string): string[] {
  const [head, tail] = a.split('%')[0]!.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((x) => x.toLowerCase().replace(/^0+(?=.)/, ''));
}

export class LoginGuard {
  /** Token → expiry and the hash of the password it was made with: a new password ends the old sessions. */
  private readonly sessions = new Map<string, { readonly expires: number; readonly hash: string }>();
  private readonly failures = new Map<string, FailureState>();
  private readonly basicCache = new Map<string, number>();
  /**
   * The check in progress per throttle key. Guesses sent at once (pipelined, or over parallel
   * connections) would otherwise all be verified before the first failure counted: one address's
   * checks run one after another, each seeing the failures of the ones before it.
   */
  private readonly checking = new Map<string, Promise<unknown>>();
  /** The end of the queue of scrypt runs: one at a time (~32 MiB and the thread pool's time each). */
  private hashing: Promise<unknown> = Promise.resolve();
  /** Keys the Basic cache, so the map never holds anything a memory dump could replay. */
  private readonly cacheKey = randomBytes(32);
  /** Failed-login lines from all addresses together: 20 per 10 s. */
  private readonly failureLines = new LineBudget();
  /** When the last GLOBAL_FAILURES failed password checks were made, oldest first. */
  private readonly recentFailures: number[] = [];
  private pausedForEveryone = false;

  constructor(
    private readonly password: () => PasswordRecord | undefined,
    private readonly log: LoginLog,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether a password is set: without one every request is let in (loopback only, checked at start). */
  get required(): boolean {
    return this.password() !== undefined;
  }

  /** Checks the request's Basic credentials or session cookie. */
  async authenticate(headers: { authorization?: string | undefined; cookie?: string | undefined }, address: string): Promise<AuthResult> {
    const record = this.password();
    if (!record) return { ok: true, via: 'none' };
    const session = readCookie(headers.cookie, SESSION_COOKIE);
    if (session && this.validSession(session, record)) return { ok: true, via: 'session' };
    const basic = parseBasic(headers.authorization);
    if (!basic) return { ok: false, reason: 'missing' };
    const verdict = await this.checkPassword(record, basic.user, basic.password, address, 'basic');
    return verdict === true ? { ok: true, via: 'basic' } : verdict;
  }

  /** The login form: a new session token on success. */
  async login(user: string, password: string, address: string): Promise<{ ok: true; token: string } | Extract<AuthResult, { ok: false }>> {
    const record = this.password();
    if (!record) return { ok: false, reason: 'wrong' };
    const verdict = await this.checkPassword(record, user, password, address, 'form');
    if (verdict !== true) return verdict;
    const token = randomBytes(32).toString('base64url');
    this.pruneSessions();
    this.sessions.set(token, { expires: this.now() + SESSION_TTL_MS, hash: record.hash });
    return { ok: true, token };
  }

  logout(cookieHeader: string | undefined): void {
    const token = readCookie(cookieHeader, SESSION_COOKIE);
    if (token) this.sessions.delete(token);
  }

  /** Seconds an address must still wait, or 0. */
  lockedFor(address: string): number {
    const s = this.failures.get(throttleKey(address));
    const left = s ? s.lockedUntil - this.now() : 0;
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }

  private async checkPassword(
    record: PasswordRecord,
    user: string,
    password: string,
    address: string,
    via: string,
  ): Promise<true | Extract<AuthResult, { ok: false }>> {
    const key = throttleKey(address);
    // Per address (its /64): a guess from elsewhere must not learn from the cache that it was right,
    // least of all while checks are paused for every address.
    const cacheId = createHmac('sha256', this.cacheKey).update(`${record.hash}\0${key}\0${user}\0${password}`).digest('base64');
    for (;;) {
      const wait = this.lockedFor(address);
      if (wait > 0) return { ok: false, reason: 'throttled', retryAfterSeconds: wait };
      const cached = this.basicCache.get(cacheId);
      if (cached !== undefined && cached > this.now()) {
        // Kept while in use: a scraper every few seconds is never checked again, not even while an
        // attack from other addresses has paused every new check.
        this.basicCache.set(cacheId, this.now() + BASIC_CACHE_MS);
        return true;
      }
      if (this.everyoneWaits() > 0) return this.pausedResult(address);
      const running = this.checking.get(key);
      if (running === undefined) break;
      await running;
    }
    const check = this.verifyAndCount(record, user, password, address, key, cacheId, via);
    const settled = check.catch(() => undefined);
    this.checking.set(key, settled);
    void settled.then(() => {
      if (this.checking.get(key) === settled) this.checking.delete(key);
    });
    return check;
  }

  /** One verification, its failure counted before anyone waiting on this address looks again. */
  private async verifyAndCount(
    record: PasswordRecord,
    user: string,
    password: string,
    address: string,
    key: string,
    cacheId: string,
    via: string,
  ): Promise<true | Extract<AuthResult, { ok: false }>> {
    let ok = false;
    // Too long to be the password: refused without a check, and not a guess the global bound counts.
    if (user.length <= 256 && password.length <= 1024) {
      // Decided in the queue: checks that waited behind others see the failures made meanwhile.
      const verdict = await this.oneAtATime(async () => (this.everyoneWaits() > 0 ? undefined : verifyPassword(record, user, password)));
      if (verdict === undefined) return this.pausedResult(address);
      ok = verdict;
      if (!ok) this.noteFailedCheck();
    }
    if (ok) {
      this.failures.delete(key);
      if (this.basicCache.size >= MAX_SESSIONS) this.basicCache.clear();
      this.basicCache.set(cacheId, this.now() + BASIC_CACHE_MS);
      return true;
    }
    const s = this.trackFailure(key);
    // Each address is slowed, but many addresses are many lines: those beyond the budget are counted.
    const suppressed = this.failureLines.admit(this.now());
    if (suppressed < 0) return { ok: false, reason: 'wrong' };
    this.log.warn(
      {
        event: 'admin-login-failed',
        code: 'KMS_ERR_ADMIN_LOGIN_FAILED',
        clientAddress: address,
        via,
        user: user.slice(0, 64),
        failures: s.failures,
        lockedSeconds: Math.ceil(Math.max(0, s.lockedUntil - this.now()) / 1000),
        ...(suppressed > 0 ? { suppressedSimilar: suppressed } : {}),
      },
      `admin login failed from ${address}`,
    );
    return { ok: false, reason: 'wrong' };
  }

  /** Seconds every address must still wait (GLOBAL_FAILURES), or 0. */
  private everyoneWaits(): number {
    if (this.recentFailures.length < GLOBAL_FAILURES) return 0;
    const left = this.recentFailures[0]! + GLOBAL_WINDOW_MS - this.now();
    if (left > 0) return Math.ceil(left / 1000);
    this.pausedForEveryone = false;
    return 0;
  }

  private noteFailedCheck(): void {
    this.recentFailures.push(this.now());
    if (this.recentFailures.length > GLOBAL_FAILURES) this.recentFailures.shift();
  }

  private pausedResult(address: string): Extract<AuthResult, { ok: false }> {
    const wait = this.everyoneWaits();
    if (!this.pausedForEveryone) {
      this.pausedForEveryone = true;
      this.log.warn(
        {
          event: 'admin-login-paused',
          code: 'KMS_ERR_ADMIN_LOGIN_FAILED',
          clientAddress: address,
          failures: GLOBAL_FAILURES,
          waitSeconds: wait,
        },
        `${GLOBAL_FAILURES} admin password checks failed within ${GLOBAL_WINDOW_MS / 60_000} minutes, from any addresses: ` +
          `password checks are paused for every address for ${wait} s (open sessions and the scraper's remembered ` +
          'credentials still work; on the box itself the CLI needs no login). Many addresses guessing is an attack: ' +
          'keep the admin port off the internet (admin.listen on the office network only, a firewall)',
      );
    }
    return { ok: false, reason: 'throttled', retryAfterSeconds: wait, everyone: true };
  }

  /** Runs scrypt checks one after another, whichever addresses they come from. */
  private oneAtATime<T>(run: () => Promise<T>): Promise<T> {
    const turn = this.hashing.then(run, run);
    this.hashing = turn.catch(() => undefined);
    return turn;
  }

  private trackFailure(key: string): FailureState {
    const now = this.now();
    let s = this.failures.get(key);
    if (!s || now - s.last > FAILURE_MEMORY_MS) {
      if (this.failures.size >= MAX_TRACKED_ADDRESSES) this.forgetOldFailures(now);
      s = { failures: 0, lockedUntil: 0, last: now };
      this.failures.set(key, s);
    }
    s.failures++;
    s.last = now;
    if (s.failures >= FREE_FAILURES) {
      s.lockedUntil = now + Math.min(LOCKOUT_MAX_MS, LOCKOUT_BASE_MS * 2 ** (s.failures - FREE_FAILURES));
    }
    return s;
  }

  private forgetOldFailures(now: number): void {
    for (const [k, s] of this.failures) if (now - s.last > FAILURE_MEMORY_MS && s.lockedUntil < now) this.failures.delete(k);
    // Still full: an attacker with many addresses. Drop the oldest half rather than grow.
    if (this.failures.size >= MAX_TRACKED_ADDRESSES) {
      let n = this.failures.size / 2;
      for (const k of this.failures.keys()) {
        if (n-- <= 0) break;
        this.failures.delete(k);
      }
    }
  }

  private validSession(token: string, record: PasswordRecord): boolean {
    const s = this.sessions.get(token);
    if (s === undefined) return false;
    if (s.expires <= this.now() || s.hash !== record.hash) {
      this.sessions.delete(token);
      return false;
    }
    return true;
  }

  private pruneSessions(): void {
    const now = this.now();
    for (const [t, s] of this.sessions) if (s.expires <= now) this.sessions.delete(t);
    while (this.sessions.size >= MAX_SESSIONS) {
      const oldest = this.sessions.keys().next().value as string;
      this.sessions.delete(oldest);
    }
  }
}

/** `Basic base64(user:password)` (RFC 7617), or undefined for anything else. */
export function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  if (!header || header.length > 4096) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookie(token: string): string {
  return `${SESSION_COOKIE}=${token}; Path=/; Max-Age=${SESSION_TTL_MS / 1000}; Secure; HttpOnly; SameSite=Strict`;
}

export function clearedSessionCookie(): string {
  return `${SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict`;
}
