import type { Db } from '../../shared/db.js';
import { dbText } from '../../shared/text.js';
import type { PhotoLane } from './photo-row.js';

/** Where an accepted photo's row is born, and removed again when its message could not be queued. */
export class PhotoIntakeRepo {
  constructor(private readonly db: Db) {}

  /**
   * The original name is the client's: stored as text Postgres takes, whichever entry point cleaned
   * it (or not). A SHA-256 the caller verified is recorded at once, so the unique index on content
   * refuses (23505) a second photo of the same bytes while this one holds them; ingest's claim then
   * finds its own hash already in place.
   */
  async insertQueued(p: {
    id: string;
    tenantId: string;
    originalName: string | null;
    contentType: string;
    bytes: number;
    format: string;
    lane?: PhotoLane;
    sha256?: string;
    notifyUrl?: string;
  }): Promise<void> {
    await this.db.query(
      `INSERT INTO photos (id, tenant_id, status, original_name, content_type, file, lane, sha256, notify_url)
       VALUES ($1, $2, 'queued', $3, $4, jsonb_build_object('bytes', $5::int, 'format', $6::text), $7, $8, $9)`,
      [p.id, p.tenantId, p.originalName === null ? null : dbText(p.originalName), p.contentType, p.bytes, p.format, p.lane ?? 'interactive', p.sha256 ?? null, p.notifyUrl ?? null],
    );
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
