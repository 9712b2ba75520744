import type { Db } from '../../shared/db.js';
import type { PhotoRef, PhotoStatus } from './photo-row.js';

export interface BlobOwner {
  status: PhotoStatus;
  parked: boolean;
}

/** Where each photo's bytes are: Redis (not final), parked in S3 (failed), or dropped (retention over). */
export class BlobRetentionRepo {
  constructor(private readonly db: Db) {}

  async markParked(ref: PhotoRef): Promise<void> {
    await this.db.query(`UPDATE photos SET blobs_parked_at = now() WHERE id = $1 AND tenant_id = $2 AND blobs_parked_at IS NULL`, [ref.photoId, ref.tenantId]);
  }

  /** Failed photos whose bytes are still in Redis (parking failed, e.g. S3 was away), failed for longer than graceMs. */
  async unparkedFailures(limit: number, graceMs: number): Promise<PhotoRef[]> {
    const { rows } = await this.db.query<{ id: string; tenant_id: string }>(
      `SELECT id, tenant_id FROM photos
       WHERE status = 'failed' AND blobs_parked_at IS NULL AND blobs_dropped_at IS NULL AND updated_at < now() - ($2::int * interval '1 millisecond')
       ORDER BY updated_at LIMIT $1`,
      [limit, graceMs],
    );
    return rows.map((r) => ({ photoId: r.id, tenantId: r.tenant_id }));
  }

  /** Parked bytes nobody will read again: the photo is complete or a duplicate, or failed for longer than the retention. */
  async parkedToDrop(limit: number, retentionMs: number): Promise<(PhotoRef & { status: PhotoStatus })[]> {
    const { rows } = await this.db.query<{ id: string; tenant_id: string; status: PhotoStatus }>(
      `SELECT id, tenant_id, status FROM photos
       WHERE blobs_parked_at IS NOT NULL
         AND (status IN ('complete', 'duplicate') OR (status = 'failed' AND blobs_parked_at < now() - ($2::bigint * interval '1 millisecond')))
       ORDER BY blobs_parked_at LIMIT $1`,
      [limit, retentionMs],
    );
    return rows.map((r) => ({ photoId: r.id, tenantId: r.tenant_id, status: r.status }));
  }

  /** The parked bytes are gone; a failed photo can no longer be replayed. */
  async markDropped(ref: PhotoRef): Promise<void> {
    await this.db.query(
      `UPDATE photos SET blobs_parked_at = NULL, blobs_dropped_at = CASE WHEN status = 'failed' THEN now() ELSE blobs_dropped_at END
       WHERE id = $1 AND tenant_id = $2`,
      [ref.photoId, ref.tenantId],
    );
  }

  /** Status of the photos that own some blobs (orphan sweep); a photo that does not exist is absent. */
  async owners(photoIds: string[]): Promise<Map<string, BlobOwner>> {
    const out = new Map<string, BlobOwner>();
    if (photoIds.length === 0) return out;
    const { rows } = await this.db.query<{ id: string; status: PhotoStatus; parked: boolean }>(
      `SELECT id, status, (blobs_parked_at IS NOT NULL OR blobs_dropped_at IS NOT NULL) AS parked FROM photos WHERE id = ANY($1::uuid[])`,
      [photoIds],
    );
    for (const r of rows) out.set(r.id, { status: r.status, parked: r.parked });
    return out;
  }
}
