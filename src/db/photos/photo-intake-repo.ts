import type { Db } from '../../shared/db.js';
import { dbText } from '../../shared/text.js';
import { isUniqueViolation, type OutputSpec, type PhotoLane, type PhotoProfile, type PhotoStatus } from './photo-row.js';

/** Where an accepted photo's row is born, and removed again when its message could not be queued. */
export class PhotoIntakeRepo {
  constructor(private readonly db: Db) {}

  /** The original name is the client's: stored as text Postgres takes, whichever entry point cleaned it (or not). */
  /** False when a photo with this id exists already (an accept of a chosen id, repeated after a crash). */
  async insertQueued(p: {
    id: string;
    tenantId: string;
    originalName: string | null;
    contentType: string;
    bytes: number;
    format: string;
    lane?: PhotoLane;
    profile?: PhotoProfile;
    output?: OutputSpec | null;
  }): Promise<boolean> {
    try {
      await this.db.query(
        `INSERT INTO photos (id, tenant_id, status, original_name, content_type, file, lane, profile, output)
         VALUES ($1, $2, 'queued', $3, $4, jsonb_build_object('bytes', $5::int, 'format', $6::text), $7, $8, $9::jsonb)`,
        [
          p.id,
          p.tenantId,
          p.originalName === null ? null : dbText(p.originalName),
          p.contentType,
          p.bytes,
          p.format,
          p.lane ?? 'interactive',
          p.profile ?? 'photo',
          p.output ? JSON.stringify(p.output) : null,
        ],
      );
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  /** A photo's tenant and status, or null when there is no such photo. */
  async statusOf(id: string): Promise<{ tenantId: string; status: PhotoStatus } | null> {
    const { rows } = await this.db.query<{ tenant_id: string; status: PhotoStatus }>(`SELECT tenant_id, status FROM photos WHERE id = $1`, [id]);
    return rows[0] ? { tenantId: rows[0].tenant_id, status: rows[0].status } : null;
  }

  /** Undoes an accepted-but-not-published photo so nothing is left half-done. */
  async deleteQueued(id: string): Promise<void> {
    await this.db.query(`DELETE FROM photos WHERE id = $1 AND status = 'queued'`, [id]);
  }

  /** Photos of a tenant not final yet (queued or processing): its load on the pipeline. */
  async inFlight(tenantId: string): Promise<number> {
    const { rows } = await this.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM photos WHERE tenant_id = $1 AND status IN ('queued', 'processing')`, [tenantId]);
    return rows[0]?.n ?? 0;
  }
}
