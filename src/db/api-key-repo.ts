import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Db } from '../shared/db.js';

const KEY_PREFIX = 'pp_';

/** API keys are random 32-byte secrets; only their SHA-256 is stored (they are not passwords, so no slow KDF is needed). */
export class ApiKeyRepo {
  constructor(private readonly db: Db) {}

  async create(tenantId: string): Promise<{ id: string; key: string }> {
    const key = `${KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
    const id = randomUUID();
    await this.db.query(`INSERT INTO api_keys (id, tenant_id, key_hash, key_prefix) VALUES ($1, $2, $3, $4)`, [
      id,
      tenantId,
      hashKey(key),
      key.slice(0, KEY_PREFIX.length + 6),
    ]);
    return { id, key };
  }

  /** The tenant a key belongs to, or null for unknown and revoked keys. */
  async tenantFor(key: string): Promise<string | null> {
    const { rows } = await this.db.query<{ tenant_id: string }>(`SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`, [hashKey(key)]);
    return rows[0]?.tenant_id ?? null;
  }

  async revoke(id: string): Promise<boolean> {
    const { rowCount } = await this.db.query(`UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, [id]);
    return rowCount === 1;
  }

  async list(tenantId?: string): Promise<{ id: string; tenantId: string; prefix: string; createdAt: Date; revokedAt: Date | null }[]> {
    const { rows } = await this.db.query<{ id: string; tenant_id: string; key_prefix: string; created_at: Date; revoked_at: Date | null }>(
      `SELECT id, tenant_id, key_prefix, created_at, revoked_at FROM api_keys WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY created_at`,
      [tenantId ?? null],
    );
    return rows.map((r) => ({ id: r.id, tenantId: r.tenant_id, prefix: r.key_prefix, createdAt: r.created_at, revokedAt: r.revoked_at }));
  }
}

function hashKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}
