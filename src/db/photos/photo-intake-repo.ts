import type { Db } from '../../shared/db.js';
import { dbText } from '../../shared/text.js';
import { isUniqueViolation, type OutputSpec, type PhotoLane, type PhotoProfile, type PhotoStatus } from './photo-row.js';

export interface NewPhoto {
  id: string;
  tenantId: string;
  originalName: string | null;
  contentType: string;
  bytes: number;
  format: string;
  lane?: PhotoLane;
  sha256?: string;
  notifyUrl?: string;
  /** What the photo is for (default 'photo'); a batch photo carries its output spec. */
  profile?: PhotoProfile;
  output?: OutputSpec | null;
}

interface Pending {
  p: NewPhoto;
  resolve: (inserted: boolean) => void;
  reject: (err: unknown) => void;
}

/** At most this many rows per multi-row INSERT. */
const MAX_BATCH = 64;

/**
 * Where an accepted photo's row is born, and removed again when its message could not be queued.
 *
 * With a batch window (the API), concurrent inserts are grouped: the first waits up to
 * `batchWindowMs` for others, then all go in one multi-row INSERT (a group commit: one round trip
 * and one commit instead of one each). Every caller still resolves only once its row is
 * committed; if the batch fails, each row is inserted alone so that every caller gets its own
 * outcome (one bad row never fails the others).
 */
export class PhotoIntakeRepo {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Db,
    private readonly opts: { batchWindowMs?: number } = {},
  ) {}

  /**
   * Resolves once the row is committed: true, or false when a photo with this id exists already
   * (an accept of a chosen id, repeated after a crash).
   */
  insertQueued(p: NewPhoto): Promise<boolean> {
    const windowMs = this.opts.batchWindowMs ?? 0;
    if (windowMs <= 0) return this.insertOne(p);
    return new Promise<boolean>((resolve, reject) => {
      this.queue.push({ p, resolve, reject });
      if (this.queue.length >= MAX_BATCH) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), windowMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.queue.splice(0, MAX_BATCH);
    if (this.queue.length > 0) this.timer = setTimeout(() => this.flush(), 0);
    if (batch.length === 0) return;
    void this.insertMany(batch.map((b) => b.p)).then(
      () => batch.forEach((b) => b.resolve(true)),
      async () => {
        for (const b of batch) await this.insertOne(b.p).then(b.resolve, b.reject);
      },
    );
  }

  private async insertOne(p: NewPhoto): Promise<boolean> {
    try {
      await this.insertMany([p]);
      return true;
    } catch (err) {
      // The id is taken (the primary key); any other unique violation (content) is the caller's.
      if (isUniqueViolation(err) && (err as { constraint?: string }).constraint === 'photos_pkey') return false;
      throw err;
    }
  }

  /** A photo's tenant and status, or null when there is no such photo. */
  async statusOf(id: string): Promise<{ tenantId: string; status: PhotoStatus } | null> {
    const { rows } = await this.db.query<{ tenant_id: string; status: PhotoStatus }>(`SELECT tenant_id, status FROM photos WHERE id = $1`, [id]);
    return rows[0] ? { tenantId: rows[0].tenant_id, status: rows[0].status } : null;
  }

  /**
   * The original name is the client's: stored as text Postgres takes, whichever entry point cleaned
   * it (or not). A SHA-256 the caller verified is recorded at once, so the unique index on content
   * refuses (23505) a second photo of the same bytes while this one holds them; ingest's claim then
   * finds its own hash already in place. (A refused row fails its batch; each row is then retried
   * alone, so only the refused one sees the error.)
   */
  private async insertMany(photos: NewPhoto[]): Promise<void> {
    const params: unknown[] = [];
    const values = photos.map((p) => {
      params.push(
        p.id,
        p.tenantId,
        p.originalName === null ? null : dbText(p.originalName),
        p.contentType,
        p.bytes,
        p.format,
        p.lane ?? 'interactive',
        p.sha256 ?? null,
        p.notifyUrl ?? null,
        p.profile ?? 'photo',
        p.output ? JSON.stringify(p.output) : null,
      );
      const n = params.length;
      return `($${n - 10}::uuid, $${n - 9}, 'queued', $${n - 8}, $${n - 7}, jsonb_build_object('bytes', $${n - 6}::int, 'format', $${n - 5}::text), $${n - 4}, $${n - 3}, $${n - 2}, $${n - 1}, $${n}::jsonb)`;
    });
    await this.db.query(
      `INSERT INTO photos (id, tenant_id, status, original_name, content_type, file, lane, sha256, notify_url, profile, output) VALUES ${values.join(', ')}`,
      params,
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
