import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { HttpError, ServiceUnavailableError } from '../shared/errors.js';
import type { ApiKeyRepo } from '../db/api-key-repo.js';

const CACHE_TTL_MS = 30_000;

function bearer(req: FastifyRequest): string {
  const header = req.headers.authorization;
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!m?.[1]) throw new HttpError(401, 'unauthorized', 'missing or malformed Authorization: Bearer <key> header');
  return m[1];
}

/**
 * Resolves the caller's tenant from its API key. Lookups are cached for 30 s per process, so a
 * revoked key stops working within that time without a Postgres query on every request.
 */
export class Authenticator {
  private readonly cache = new Map<string, { tenant: string | null; expires: number }>();
  private readonly resolved = new WeakMap<FastifyRequest, string>();

  constructor(private readonly keys: ApiKeyRepo) {}

  async tenantOf(req: FastifyRequest): Promise<string> {
    const known = this.resolved.get(req);
    if (known) return known;
    const key = bearer(req);
    const hit = this.cache.get(key);
    let tenant: string | null;
    if (hit && hit.expires > Date.now()) {
      tenant = hit.tenant;
    } else {
      try {
        tenant = await this.keys.tenantFor(key);
      } catch {
        throw new ServiceUnavailableError('cannot verify the API key right now (database unavailable)');
      }
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(key, { tenant, expires: Date.now() + CACHE_TTL_MS });
    }
    if (!tenant) throw new HttpError(401, 'unauthorized', 'unknown or revoked API key');
    this.resolved.set(req, tenant);
    return tenant;
  }
}

/** Admin endpoints: a single operator key from ADMIN_API_KEY; disabled (404) when unset. */
export function requireAdmin(req: FastifyRequest, adminKey: string | undefined): void {
  if (!adminKey) throw new HttpError(404, 'not_found', 'admin API is disabled (set ADMIN_API_KEY)');
  const given = Buffer.from(bearer(req));
  const want = Buffer.from(adminKey);
  if (given.length !== want.length || !timingSafeEqual(given, want)) throw new HttpError(401, 'unauthorized', 'invalid admin key');
}
