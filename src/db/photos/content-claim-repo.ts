import type { Db } from '../../shared/db.js';
import { isUniqueViolation, OWNS_CONTENT, SAME_SCOPE, type FileInfo, type PhotoRef, type PhotoStatus } from './photo-row.js';

/** The photo that holds a tenant's content: never a duplicate and never failed (OWNS_CONTENT). */
export interface ContentOwner {
  id: string;
  sha256: string;
  status: Exclude<PhotoStatus, 'duplicate' | 'failed'>;
}

/** Exact-duplicate detection: which photo owns a tenant's content (its SHA-256). */
export class ContentClaimRepo {
  constructor(private readonly db: Db) {}

  /**
   * The photos that hold these contents for the tenant, by SHA-256 (lower-case hex). Read through
   * photos_tenant_sha256_unique, whose predicate the query repeats. Photos uploaded without a
   * checksum are found once ingest has hashed them; checked uploads from the moment they are accepted.
   * Only uploads' content counts (profile 'photo'): a batch image of the same bytes is another output.
   */
  async owners(tenantId: string, sha256s: readonly string[]): Promise<Map<string, ContentOwner>> {
    if (sha256s.length === 0) return new Map();
    const { rows } = await this.db.query<ContentOwner>(
      `SELECT p.id, p.sha256, p.status FROM photos p
       WHERE p.tenant_id = $1 AND p.sha256 = ANY($2::text[]) AND p.sha256 IS NOT NULL AND p.profile = 'photo' AND p.output IS NULL AND ${OWNS_CONTENT}`,
      [tenantId, [...new Set(sha256s)]],
    );
    return new Map(rows.map((r) => [r.sha256, r]));
  }

  /**
   * Records the content hash. The partial unique index on (tenant, sha256) makes concurrent
   * ingests of the same bytes race in Postgres: one wins, the others become duplicates of it.
   * A failed photo is not in that index, so the same bytes uploaded again are processed anew.
   * Re-running for the same photo (redelivery) is a no-op. Null when this tenant has no such photo.
   */
  async claim(ref: PhotoRef, sha256: string, file: FileInfo): Promise<{ duplicateOf: string | null } | null> {
    const { photoId: id, tenantId } = ref;
    try {
      const { rowCount } = await this.db.query(
        `UPDATE photos SET sha256 = $2, file = COALESCE(file, '{}'::jsonb) || $3::jsonb,
           status = CASE WHEN status = 'queued' THEN 'processing' ELSE status END, updated_at = now()
         WHERE id = $1 AND tenant_id = $4 AND duplicate_of IS NULL AND (sha256 IS NULL OR sha256 = $2)`,
        [id, sha256, JSON.stringify(file), tenantId],
      );
      if (rowCount === 1) return { duplicateOf: null };
      const { rows } = await this.db.query<{ duplicate_of: string | null }>(`SELECT duplicate_of FROM photos WHERE id = $1 AND tenant_id = $2`, [id, tenantId]);
      return rows[0] ? { duplicateOf: rows[0].duplicate_of } : null;
    } catch (err) {
      if (!isUniqueViolation(err)) throw err; // another photo owns this content
    }
    const { rows } = await this.db.query<{ winner: string }>(
      `WITH winner AS (
         SELECT p.id FROM photos p, photos me
         WHERE me.id = $1 AND ${SAME_SCOPE} AND p.sha256 = $2 AND p.id <> $1 AND ${OWNS_CONTENT})
       UPDATE photos SET sha256 = $2, duplicate_of = winner.id, status = 'duplicate', file = $3::jsonb,
         stages = '{"ingest":"done"}'::jsonb, completed_at = now(), updated_at = now(), progressed_at = now()
       FROM winner WHERE photos.id = $1 AND photos.tenant_id = $4
       RETURNING winner.id AS winner`,
      [id, sha256, JSON.stringify(file), tenantId],
    );
    const winner = rows[0]?.winner;
    if (!winner) throw new Error(`photo ${id}: unique violation on content but no winning photo found`);
    return { duplicateOf: winner };
  }
}
