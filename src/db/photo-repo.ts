import type { Db } from '../shared/db.js';
import type { StageName } from '../shared/config.js';

export type PhotoStatus = 'queued' | 'processing' | 'complete' | 'duplicate' | 'failed';
export type StageState = 'pending' | 'done' | 'skipped' | 'failed';
export type VariantKind = 'original' | 'framed' | 'thumbnail';

export interface FileInfo {
  format: string;
  width: number;
  height: number;
  bytes: number;
  /** Ingest stored a decoded working copy (HEIC): renditions are made from it, not from the upload. */
  workingCopy?: boolean;
}

/** What a stage needs to know about its photo before working: little, so it is cheap to read. */
export interface StageView {
  tenantId: string;
  status: PhotoStatus;
  stages: Partial<Record<StageName, StageState>>;
  file: FileInfo | null;
}

export interface PhotoRow {
  id: string;
  tenantId: string;
  status: PhotoStatus;
  sha256: string | null;
  duplicateOf: string | null;
  originalName: string | null;
  contentType: string | null;
  file: FileInfo | null;
  exif: Record<string, unknown> | null;
  gps: { lat: number; lon: number; alt: number | null } | null;
  place: Record<string, unknown> | null;
  stages: Partial<Record<StageName, StageState>>;
  error: { stage: string; reason: string; code?: string; attempts?: number } | null;
  createdAt: Date;
  updatedAt: Date;
  progressedAt: Date;
  completedAt: Date | null;
}

export interface StalePosition {
  position: string;
  id: string;
}

export interface VariantRow {
  kind: VariantKind;
  s3Key: string;
  url: string | null;
  width: number;
  height: number;
  bytes: number;
  contentType: string;
}

/**
 * Which photo owns its content, as the partial unique index photos_tenant_sha256_unique defines it
 * (migrations): not a duplicate and not failed. `p` is the candidate owner.
 */
const OWNS_CONTENT = `p.duplicate_of IS NULL AND p.status <> 'failed'`;

/**
 * A timestamp column as keyset position text with Postgres' microseconds: a JS Date keeps only
 * milliseconds, and a position cut to the millisecond skips or repeats rows of the same millisecond.
 */
const positionOf = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const COLUMNS = `id, tenant_id, status, sha256, duplicate_of, original_name, content_type, file, exif,
  gps_lat, gps_lon, gps_alt, place, stages, error, created_at, updated_at, progressed_at, completed_at`;

function toRow(r: Record<string, unknown>): PhotoRow {
  return {
    id: r.id as string,
    tenantId: r.tenant_id as string,
    status: r.status as PhotoStatus,
    sha256: (r.sha256 as string | null) ?? null,
    duplicateOf: (r.duplicate_of as string | null) ?? null,
    originalName: (r.original_name as string | null) ?? null,
    contentType: (r.content_type as string | null) ?? null,
    file: (r.file as FileInfo | null) ?? null,
    exif: (r.exif as Record<string, unknown> | null) ?? null,
    gps: r.gps_lat === null || r.gps_lat === undefined ? null : { lat: r.gps_lat as number, lon: r.gps_lon as number, alt: (r.gps_alt as number | null) ?? null },
    place: (r.place as Record<string, unknown> | null) ?? null,
    stages: (r.stages as PhotoRow['stages']) ?? {},
    error: (r.error as PhotoRow['error']) ?? null,
    createdAt: r.created_at as Date,
    updatedAt: r.updated_at as Date,
    progressedAt: r.progressed_at as Date,
    completedAt: (r.completed_at as Date | null) ?? null,
  };
}

/** Columns a stage may set together with its completion, in the same statement. */
export interface StageFields {
  exif?: unknown;
  exifRaw?: unknown;
  gps?: { lat: number; lon: number; alt: number | null } | null;
  place?: unknown;
}

/** What a stage records together with its completion: stages to initialise or set, and its columns. */
export interface CompleteStageOptions {
  initStages?: Partial<Record<StageName, StageState>>;
  setStages?: Partial<Record<StageName, StageState>>;
  fields?: StageFields;
}

export interface StageCompletion {
  row: PhotoRow;
  /** True for exactly one caller: the one whose update made the photo complete. */
  justCompleted: boolean;
}

/** All photo state lives here; every write is a single idempotent statement. */
export class PhotoRepo {
  constructor(private readonly db: Db) {}

  async insertQueued(p: { id: string; tenantId: string; originalName: string | null; contentType: string; bytes: number; format: string }): Promise<PhotoRow> {
    const { rows } = await this.db.query(
      `INSERT INTO photos (id, tenant_id, status, original_name, content_type, file)
       VALUES ($1, $2, 'queued', $3, $4, jsonb_build_object('bytes', $5::int, 'format', $6::text))
       RETURNING ${COLUMNS}`,
      [p.id, p.tenantId, p.originalName, p.contentType, p.bytes, p.format],
    );
    return toRow(rows[0]);
  }

  /** Undoes an accepted-but-not-published upload so nothing is left half-done. */
  async deleteQueued(id: string): Promise<void> {
    await this.db.query(`DELETE FROM photos WHERE id = $1 AND status = 'queued'`, [id]);
  }

  async get(id: string): Promise<PhotoRow | null> {
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM photos WHERE id = $1`, [id]);
    return rows[0] ? toRow(rows[0]) : null;
  }

  async stageView(id: string): Promise<StageView | null> {
    const { rows } = await this.db.query(`SELECT tenant_id, status, stages, file FROM photos WHERE id = $1`, [id]);
    const r = rows[0];
    return r ? { tenantId: r.tenant_id, status: r.status, stages: r.stages ?? {}, file: r.file ?? null } : null;
  }

  async getForTenant(tenantId: string, id: string): Promise<PhotoRow | null> {
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM photos WHERE id = $1 AND tenant_id = $2`, [id, tenantId]);
    return rows[0] ? toRow(rows[0]) : null;
  }

  /**
   * Newest first, keyset-paginated on (created_at, id); the last row's position is positionOf() text.
   */
  async list(
    tenantId: string,
    opts: { status?: PhotoStatus; limit: number; before?: { createdAt: string; id: string } },
  ): Promise<{ items: PhotoRow[]; next: { createdAt: string; id: string } | null }> {
    const params: unknown[] = [tenantId];
    let where = 'tenant_id = $1';
    if (opts.status) {
      params.push(opts.status);
      where += ` AND status = $${params.length}`;
    }
    if (opts.before) {
      params.push(opts.before.createdAt, opts.before.id);
      where += ` AND (created_at, id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`;
    }
    params.push(opts.limit + 1);
    const { rows } = await this.db.query(
      `SELECT ${COLUMNS}, ${positionOf('created_at')} AS position
       FROM photos WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    const page = rows.slice(0, opts.limit);
    const last = page[page.length - 1];
    return { items: page.map(toRow), next: rows.length > opts.limit && last ? { createdAt: last.position as string, id: last.id as string } : null };
  }

  /**
   * Records the content hash. The partial unique index on (tenant, sha256) makes concurrent
   * ingests of the same bytes race in Postgres: one wins, the others become duplicates of it.
   * A failed photo is not in that index, so the same bytes uploaded again are processed anew.
   * Re-running for the same photo (redelivery) is a no-op.
   */
  async claimContent(id: string, sha256: string, file: FileInfo): Promise<{ duplicateOf: string | null }> {
    try {
      const { rowCount } = await this.db.query(
        `UPDATE photos SET sha256 = $2, file = COALESCE(file, '{}'::jsonb) || $3::jsonb,
           status = CASE WHEN status = 'queued' THEN 'processing' ELSE status END, updated_at = now()
         WHERE id = $1 AND duplicate_of IS NULL AND (sha256 IS NULL OR sha256 = $2)`,
        [id, sha256, JSON.stringify(file)],
      );
      if (rowCount === 1) return { duplicateOf: null };
      const current = await this.get(id);
      return { duplicateOf: current?.duplicateOf ?? null };
    } catch (err) {
      if ((err as { code?: string }).code !== '23505') throw err; // unique_violation: another photo owns this content
    }
    const { rows } = await this.db.query(
      `WITH winner AS (
         SELECT p.id FROM photos p, photos me
         WHERE me.id = $1 AND p.tenant_id = me.tenant_id AND p.sha256 = $2 AND p.id <> $1 AND ${OWNS_CONTENT})
       UPDATE photos SET sha256 = $2, duplicate_of = winner.id, status = 'duplicate', file = $3::jsonb,
         stages = '{"ingest":"done"}'::jsonb, completed_at = now(), updated_at = now(), progressed_at = now()
       FROM winner WHERE photos.id = $1
       RETURNING winner.id AS winner`,
      [id, sha256, JSON.stringify(file)],
    );
    const winner = rows[0]?.winner as string | undefined;
    if (!winner) throw new Error(`photo ${id}: unique violation on content but no winning photo found`);
    return { duplicateOf: winner };
  }

  /**
   * Marks a stage done (plus the columns it produced) and, in the same statement, completes the
   * photo when no stage is left pending. Row locking makes concurrent finishers see each other's
   * writes, so exactly one of them observes the transition to complete.
   */
  async completeStage(id: string, stage: StageName, opts: CompleteStageOptions = {}): Promise<StageCompletion | null> {
    const f = opts.fields ?? {};
    const setStages = { ...(opts.setStages ?? {}), [stage]: 'done' };
    // The locking read in `old` waits for a concurrent finisher and then sees its committed
    // stages (a plain read in the same statement would see the older snapshot and lose its write).
    const { rows } = await this.db.query(
      `WITH old AS (SELECT id, status, stages FROM photos WHERE id = $1 FOR UPDATE),
       merged AS (SELECT id, status AS old_status, ($2::jsonb || stages || $3::jsonb) AS stages FROM old),
       fin AS (
         SELECT id, old_status, stages,
           (old_status = 'processing' AND NOT EXISTS (
              SELECT 1 FROM jsonb_each_text(merged.stages) s WHERE s.value NOT IN ('done', 'skipped'))) AS completes
         FROM merged)
       UPDATE photos p SET
         stages = fin.stages,
         status = CASE WHEN fin.completes THEN 'complete' ELSE fin.old_status END,
         completed_at = CASE WHEN fin.completes THEN now() ELSE p.completed_at END,
         exif = CASE WHEN $4::boolean THEN $5::jsonb ELSE p.exif END,
         exif_raw = CASE WHEN $4::boolean THEN $6::jsonb ELSE p.exif_raw END,
         gps_lat = CASE WHEN $4::boolean THEN $7::double precision ELSE p.gps_lat END,
         gps_lon = CASE WHEN $4::boolean THEN $8::double precision ELSE p.gps_lon END,
         gps_alt = CASE WHEN $4::boolean THEN $9::double precision ELSE p.gps_alt END,
         place = CASE WHEN $10::boolean THEN $11::jsonb ELSE p.place END,
         updated_at = now(), progressed_at = now()
       FROM fin
       WHERE p.id = fin.id
       RETURNING ${COLUMNS.split(',').map((c) => `p.${c.trim()}`).join(', ')}, fin.completes AS just_completed`,
      [
        id,
        JSON.stringify(opts.initStages ?? {}),
        JSON.stringify(setStages),
        'exif' in f,
        f.exif === undefined ? null : JSON.stringify(f.exif),
        f.exifRaw === undefined || f.exifRaw === null ? null : JSON.stringify(f.exifRaw),
        f.gps?.lat ?? null,
        f.gps?.lon ?? null,
        f.gps?.alt ?? null,
        'place' in f,
        f.place === undefined || f.place === null ? null : JSON.stringify(f.place),
      ],
    );
    const r = rows[0];
    if (!r) return null;
    const row = toRow(r);
    return { row, justCompleted: r.just_completed === true };
  }

  /**
   * Terminal failure of a stage. A failure that arrives after the stage succeeded (a duplicate
   * delivery, a handler abandoned at its deadline that finished anyway) or after the photo reached
   * complete/duplicate changes nothing and is reported as moot: the photo's outcome stands.
   */
  async recordFailure(id: string, f: { stage: StageName; reason: string; code: string; errorClass: string; attempts: number }): Promise<'recorded' | 'moot' | 'missing'> {
    const { rowCount } = await this.db.query(
      `UPDATE photos SET status = 'failed',
         error = jsonb_build_object('stage', $2::text, 'reason', $3::text, 'code', $4::text, 'errorClass', $5::text, 'attempts', $6::int),
         stages = stages || jsonb_build_object($2::text, 'failed'),
         updated_at = now(), progressed_at = now()
       WHERE id = $1 AND status NOT IN ('complete', 'duplicate') AND COALESCE(stages ->> $2, 'pending') <> 'done'`,
      [id, f.stage, f.reason, f.code, f.errorClass, f.attempts],
    );
    if (rowCount === 1) return 'recorded';
    const { rows } = await this.db.query(`SELECT 1 FROM photos WHERE id = $1`, [id]);
    return rows.length > 0 ? 'moot' : 'missing';
  }

  /**
   * Before a dead letter is replayed: the stage is pending again, and the photo processing unless
   * another stage is still failed (then it stays failed until that one is replayed too, so it never
   * sits in processing waiting for a stage nobody runs). If the same content was uploaded again and
   * processed meanwhile, the failed photo cannot own it any more: it becomes a duplicate of the new
   * one instead, and the replayed message finds no work.
   */
  async reopenStage(id: string, stage: StageName): Promise<'reopened' | 'duplicate' | 'not_reopened'> {
    try {
      const { rowCount } = await this.db.query(
        `UPDATE photos SET
           stages = stages || jsonb_build_object($2::text, 'pending'),
           status = CASE WHEN others.failed IS NULL THEN 'processing' ELSE 'failed' END,
           error = CASE WHEN others.failed IS NULL THEN NULL
                        WHEN error ->> 'stage' = $2 THEN jsonb_build_object('stage', others.failed, 'reason', 'still failed: replay its dead letter too')
                        ELSE error END,
           updated_at = now(), progressed_at = now()
         FROM (SELECT (SELECT s.key FROM photos p, jsonb_each_text(p.stages) s
                       WHERE p.id = $1 AND s.key <> $2 AND s.value = 'failed' ORDER BY s.key LIMIT 1) AS failed) others
         WHERE id = $1 AND status IN ('failed', 'processing', 'queued') AND COALESCE(stages ->> $2, 'pending') <> 'done'`,
        [id, stage],
      );
      return rowCount === 1 ? 'reopened' : 'not_reopened';
    } catch (err) {
      if ((err as { code?: string }).code !== '23505') throw err; // unique_violation: the content has a new owner
    }
    const { rowCount } = await this.db.query(
      `UPDATE photos SET status = 'duplicate', duplicate_of = owner.id, error = NULL,
         completed_at = now(), updated_at = now(), progressed_at = now()
       FROM (SELECT p.id FROM photos p, photos me
             WHERE me.id = $1 AND p.tenant_id = me.tenant_id AND p.sha256 = me.sha256 AND p.id <> me.id AND ${OWNS_CONTENT} LIMIT 1) owner
       WHERE photos.id = $1`,
      [id],
    );
    return rowCount === 1 ? 'duplicate' : 'not_reopened';
  }

  /** One statement for all of a photo's variants; re-running replaces them (same keys, same rows). */
  async upsertVariants(photoId: string, variants: VariantRow[]): Promise<void> {
    if (variants.length === 0) return;
    const params: unknown[] = [photoId];
    const values = variants.map((v) => {
      params.push(v.kind, v.s3Key, v.url, v.width, v.height, v.bytes, v.contentType);
      const n = params.length;
      return `($1, $${n - 6}, $${n - 5}, $${n - 4}, $${n - 3}::int, $${n - 2}::int, $${n - 1}::int, $${n})`;
    });
    await this.db.query(
      `INSERT INTO photo_variants (photo_id, kind, s3_key, url, width, height, bytes, content_type)
       VALUES ${values.join(', ')}
       ON CONFLICT (photo_id, kind) DO UPDATE SET s3_key = EXCLUDED.s3_key, url = EXCLUDED.url, width = EXCLUDED.width,
         height = EXCLUDED.height, bytes = EXCLUDED.bytes, content_type = EXCLUDED.content_type`,
      params,
    );
  }

  async variants(photoId: string): Promise<VariantRow[]> {
    return (await this.variantsFor([photoId])).get(photoId) ?? [];
  }

  /** The variants of several photos in one query (list pages). */
  async variantsFor(photoIds: string[]): Promise<Map<string, VariantRow[]>> {
    const out = new Map<string, VariantRow[]>();
    if (photoIds.length === 0) return out;
    const { rows } = await this.db.query(
      `SELECT photo_id, kind, s3_key, url, width, height, bytes, content_type FROM photo_variants WHERE photo_id = ANY($1::uuid[]) ORDER BY kind`,
      [photoIds],
    );
    for (const r of rows) {
      const list = out.get(r.photo_id) ?? [];
      list.push({ kind: r.kind, s3Key: r.s3_key, url: r.url, width: r.width, height: r.height, bytes: r.bytes, contentType: r.content_type });
      out.set(r.photo_id, list);
    }
    return out;
  }

  /**
   * Photos in a non-final state that no stage has moved for longer than staleMs, oldest first, a
   * page at a time: `after` is the previous page's `next` (a positionOf() text, as in list()).
   */
  async findStale(staleMs: number, limit: number, after?: StalePosition): Promise<{ items: PhotoRow[]; next: StalePosition | null }> {
    const { rows } = await this.db.query(
      `SELECT ${COLUMNS}, ${positionOf('progressed_at')} AS position
       FROM photos WHERE status IN ('queued', 'processing')
         AND progressed_at < now() - ($1::int * interval '1 millisecond')
         AND ($3::timestamptz IS NULL OR (progressed_at, id) > ($3::timestamptz, $4::uuid))
       ORDER BY progressed_at, id LIMIT $2`,
      [staleMs, limit, after?.position ?? null, after?.id ?? null],
    );
    const last = rows[rows.length - 1];
    return { items: rows.map(toRow), next: rows.length === limit && last ? { position: last.position as string, id: last.id as string } : null };
  }

  /** The reconciler touches a photo it republished, so the next run waits a full threshold again. */
  async touchProgress(id: string): Promise<void> {
    await this.db.query(`UPDATE photos SET progressed_at = now() WHERE id = $1 AND status IN ('queued', 'processing')`, [id]);
  }
}
