import { createHash, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { HttpError, ServiceUnavailableError } from '../shared/errors.js';
import type { AuthFailureLimiter } from './auth-failures.js';

/** Who may call a route; every route declares it (app.ts refuses to register one that does not). */
export type RouteAuth = 'tenant' | 'admin' | 'none';

/** Where tenants' keys are checked (ApiKeyRepo; a counting fake in unit tests). */
export interface KeyLookup {
  tenantFor(key: string): Promise<string | null>;
}

export interface AuthenticatorOptions {
  keys: KeyLookup;
  failures: AuthFailureLimiter;
  /** Most keys remembered at once; the least recently used go first. */
  maxEntries: number;
  /** A verified key is believed this long (a revoked key stops within it). */
  ttlMs: number;
  /** An unknown or revoked key is remembered as such this long. */
  negativeTtlMs: number;
}

interface CachedKey {
  tenant: string | null;
}

/** Our keys are `pp_` + 43 characters; anything much longer is not one, and is not hashed or looked up. */
const MAX_KEY_LENGTH = 256;
const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

function bearerKey(authorization: string | undefined): string | null {
  const m = authorization ? BEARER.exec(authorization) : null;
  return m?.[1] && m[1].length <= MAX_KEY_LENGTH ? m[1] : null;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export function tooManyFailures(retryMs: number): HttpError {
  const seconds = Math.max(1, Math.ceil(retryMs / 1000));
  return new HttpError(429, 'rate_limited', `too many failed authentications from this address; try again in ${seconds} s`, { 'retry-after': String(seconds) });
}

/** Counts a failure for the client and answers 401, or 429 once the client is over its limit. */
async function refuse(failures: AuthFailureLimiter, client: string, status: 401, message: string): Promise<never> {
  const blockedMs = await failures.recordFailure(client);
  if (blockedMs > 0) throw tooManyFailures(blockedMs);
  throw new HttpError(status, 'unauthorized', message);
}

/**
 * Resolves a caller's tenant from its API key. Keys are remembered in a bounded LRU keyed by the
 * key's SHA-256 (the plaintext is never kept): verified keys for `ttlMs`, unknown ones briefly
 * (`negativeTtlMs`), and concurrent lookups of one key share a single Postgres query. A client
 * whose failures are over the limit gets 429 before any lookup, so random keys cannot turn
 * anonymous traffic into Postgres queries; a key this process has already verified is served
 * from the cache without asking the limiter (a neighbour behind the same address is not held up).
 */
export class Authenticator {
  private readonly cache: LRUCache<string, CachedKey, string>;

  constructor(private readonly opts: AuthenticatorOptions) {
    this.cache = new LRUCache<string, CachedKey, string>({
      max: opts.maxEntries,
      ttl: opts.ttlMs,
      fetchMethod: async (_hash, _stale, { context, options }) => {
        const tenant = await opts.keys.tenantFor(context);
        if (!tenant) options.ttl = opts.negativeTtlMs;
        return { tenant };
      },
    });
  }

  /** Entries held now (bounded by maxEntries). */
  get size(): number {
    return this.cache.size;
  }

  async tenantFor(authorization: string | undefined, client: string): Promise<string> {
    const key = bearerKey(authorization);
    if (!key) return refuse(this.opts.failures, client, 401, 'missing or malformed Authorization: Bearer <key> header');
    const hash = sha256(key).toString('base64url');
    let entry = this.cache.get(hash);
    if (!entry) {
      const blockedMs = await this.opts.failures.blockedForMs(client);
      if (blockedMs > 0) throw tooManyFailures(blockedMs);
      try {
        entry = await this.cache.fetch(hash, { context: key });
      } catch {
        throw new ServiceUnavailableError('cannot verify the API key right now (database unavailable)');
      }
    }
    if (!entry?.tenant) return refuse(this.opts.failures, client, 401, 'unknown or revoked API key');
    return entry.tenant;
  }
}

/**
 * Admin endpoints: a single operator key from ADMIN_API_KEY; disabled (404) when unset. Keys are
 * compared as SHA-256 digests in constant time (so neither content nor length leaks by timing),
 * and wrong keys count as failed authentications of the client like wrong tenant keys.
 */
export class AdminGuard {
  private readonly want: Buffer | null;

  constructor(
    adminKey: string | undefined,
    private readonly failures: AuthFailureLimiter,
  ) {
    this.want = adminKey ? sha256(adminKey) : null;
  }

  get enabled(): boolean {
    return this.want !== null;
  }

  private isAdmin(authorization: string | undefined): boolean {
    const key = bearerKey(authorization);
    return this.want !== null && key !== null && timingSafeEqual(sha256(key), this.want);
  }

  async check(authorization: string | undefined, client: string): Promise<void> {
    if (!this.want) throw new HttpError(404, 'not_found', 'admin API is disabled (set ADMIN_API_KEY)');
    const blockedMs = await this.failures.blockedForMs(client);
    if (blockedMs > 0) throw tooManyFailures(blockedMs);
    if (!this.isAdmin(authorization)) await refuse(this.failures, client, 401, 'invalid admin key');
  }
}
