import type { Db } from '../../shared/db.js';
import { bestEffortStages, type PipelineGraph } from '../../pipeline/graph.js';
import type { StageName } from '../../pipeline/photo-pipeline.js';
import { isUniqueViolation, OWNS_CONTENT, SAME_SCOPE, photoColumns, toPhotoRow, type FileInfo, type PhotoDbRow, type PhotoRef, type PhotoRow, type PhotoStatus, type Stages, type StageState, type PhotoProfile, type OutputSpec } from './photo-row.js';
import { assignments, type StageColumns } from './stage-columns.js';
import { dbText } from '../../shared/text.js';

/** What a stage needs to know about its photo before working: little, so it is cheap to read. */
export interface StageView {
  tenantId: string;
  status: PhotoStatus;
  stages: Stages;
  file: FileInfo | null;
  gps: { lat: number; lon: number } | null;
  profile: PhotoProfile;
  /** A batch photo's output (convert). */
  output: OutputSpec | null;
}

interface StageViewDbRow {
  tenant_id: string;
  status: PhotoStatus;
  stages: Stages | null;
  file: FileInfo | null;
  gps_lat: number | null;
  gps_lon: number | null;
  profile: PhotoProfile;
  output: OutputSpec | null;
}

export interface StageCommit {
  /** The stage's own new state (done, or skipped when its condition was false). */
  state?: 'done' | 'skipped';
  /** Later stages this commit already knows will run: recorded as pending unless already recorded. */
  pending?: readonly StageName[];
  /** Later stages this commit already knows to be skipped (their condition is false). */
  skip?: readonly StageName[];
  /** The columns the stage produced. */
  columns?: StageColumns;
}

interface CommitOptions {
  /** Commit only while this stage is not done (a late failure of a stage that succeeded is moot). */
  unlessDone?: StageName;
  /** A best-effort stage's failure, merged into stage_errors. */
  stageError?: Record<string, unknown>;
}

export interface StageCompletion {
  row: PhotoRow;
  /** True for exactly one caller: the one whose update made the photo complete. */
  justCompleted: boolean;
}

export interface StageFailure {
  stage: StageName;
  reason: string;
  code: string;
  errorClass: string;
  attempts: number;
}

/**
 * The per-photo stage state machine: every write is a single idempotent statement, and the rule
 * "complete when every stage of the graph is done or skipped" comes from the graph.
 */
export class StageStateRepo {
  private readonly allStages: string[];
  private readonly bestEffort: string[];

  constructor(
    private readonly db: Db,
    graph: PipelineGraph<StageName>,
  ) {
    this.allStages = [...graph.stages];
    this.bestEffort = bestEffortStages(graph);
  }

  isBestEffort(stage: StageName): boolean {
    return this.bestEffort.includes(stage);
  }

  async stageView(id: string): Promise<StageView | null> {
    const { rows } = await this.db.query<StageViewDbRow>(`SELECT tenant_id, status, stages, file, gps_lat, gps_lon, profile, output FROM photos WHERE id = $1`, [id]);
    const r = rows[0];
    if (!r) return null;
    return {
      tenantId: r.tenant_id,
      status: r.status,
      stages: r.stages ?? {},
      file: r.file,
      gps: r.gps_lat === null || r.gps_lon === null ? null : { lat: r.gps_lat, lon: r.gps_lon },
      profile: r.profile,
      output: r.output,
    };
  }

  /**
   * Marks a stage done (or skipped) with the columns it produced and, in the same statement,
   * completes the photo when every stage is finished. Row locking makes concurrent finishers see
   * each other's writes, so exactly one of them observes the transition to complete.
   *
   * A success clears its own stage's failure (a late success: the failure was recorded, its dead
   * letter could not be published, and the retry then succeeded): the photo is processing again,
   * or complete, unless another stage is still failed.
   */
  async completeStage(ref: PhotoRef, stage: StageName, c: StageCommit = {}): Promise<StageCompletion | null> {
    const init: Partial<Record<StageName, StageState>> = {};
    for (const s of c.pending ?? []) init[s] = 'pending';
    const set: Partial<Record<StageName, StageState>> = {};
    for (const s of c.skip ?? []) set[s] = 'skipped';
    set[stage] = c.state ?? 'done';
    return this.commit(ref, init, set, c.columns, {});
  }

  /** Records stages as skipped (a condition found false after a concurrent commit made them ready). */
  async markSkipped(ref: PhotoRef, stages: readonly StageName[]): Promise<StageCompletion | null> {
    return this.commit(ref, {}, Object.fromEntries(stages.map((s) => [s, 'skipped'])), undefined, {});
  }

  /**
   * The terminal failure of a best-effort stage (geocode): recorded as the stage's state and in
   * stage_errors, without failing the photo, which completes if nothing else is left. Moot when
   * the stage had already succeeded.
   */
  async recordBestEffortFailure(ref: PhotoRef, f: StageFailure): Promise<{ outcome: 'recorded'; completion: StageCompletion } | { outcome: 'moot' | 'missing' }> {
    const error = { code: f.code, reason: f.reason, errorClass: f.errorClass, attempts: f.attempts, at: new Date().toISOString() };
    const completion = await this.commit(ref, {}, { [f.stage]: 'failed' }, undefined, { unlessDone: f.stage, stageError: { [f.stage]: error } });
    if (completion) return { outcome: 'recorded', completion };
    const { rows } = await this.db.query(`SELECT 1 FROM photos WHERE id = $1 AND tenant_id = $2`, [ref.photoId, ref.tenantId]);
    return { outcome: rows.length > 0 ? 'moot' : 'missing' };
  }

  /** `init` fills states not recorded yet, `set` overwrites. */
  private async commit(
    ref: PhotoRef,
    init: Partial<Record<StageName, StageState>>,
    set: Partial<Record<StageName, StageState>>,
    columns: StageColumns | undefined,
    o: CommitOptions,
  ): Promise<StageCompletion | null> {
    try {
      return await this.commitOnce(ref, init, set, columns, o);
    } catch (err) {
      // A failed photo does not own its content (the unique index leaves it out); one that comes
      // back to life after the same bytes were uploaded again and processed is a duplicate of that one.
      if (!isUniqueViolation(err)) throw err;
    }
    await this.becomeDuplicate(ref.photoId);
    const row = await this.db.query<PhotoDbRow>(`SELECT ${photoColumns()} FROM photos WHERE id = $1 AND tenant_id = $2`, [ref.photoId, ref.tenantId]);
    return row.rows[0] ? { row: toPhotoRow(row.rows[0]), justCompleted: false } : null;
  }

  private async commitOnce(
    ref: PhotoRef,
    init: Partial<Record<StageName, StageState>>,
    set: Partial<Record<StageName, StageState>>,
    columns: StageColumns | undefined,
    o: CommitOptions,
  ): Promise<StageCompletion | null> {
    // A stage that finishes clears its own best-effort error.
    const cleared = Object.entries(set).filter(([, v]) => v === 'done' || v === 'skipped').map(([k]) => k);
    const params: unknown[] = [
      ref.photoId,
      JSON.stringify(set),
      this.allStages,
      JSON.stringify(init),
      ref.tenantId,
      this.bestEffort,
      o.unlessDone ?? null,
      o.stageError ? JSON.stringify(o.stageError) : null,
      cleared,
    ];
    const extra = assignments(columns, params);
    // The locking read in `old` waits for a concurrent finisher and then sees its committed
    // stages (a plain read in the same statement would see the older snapshot and lose its write).
    const { rows } = await this.db.query<PhotoDbRow & { just_completed: boolean }>(
      `WITH old AS (SELECT id, status, stages, error FROM photos
                   WHERE id = $1 AND tenant_id = $5 AND ($7::text IS NULL OR COALESCE(stages ->> $7, 'pending') <> 'done') FOR UPDATE),
       merged AS (SELECT id, status AS old_status, error AS old_error, ($4::jsonb || stages || $2::jsonb) AS stages FROM old),
       judged AS (
         SELECT id, old_status, old_error, stages,
           (SELECT s.key FROM jsonb_each_text(merged.stages) s WHERE s.value = 'failed' AND NOT (s.key = ANY($6::text[])) ORDER BY s.key LIMIT 1) AS still_failed,
           NOT EXISTS (
             SELECT 1 FROM unnest($3::text[]) AS s(name)
             WHERE COALESCE(merged.stages ->> s.name, 'pending') NOT IN ('done', 'skipped')
               AND NOT (merged.stages ->> s.name = 'failed' AND s.name = ANY($6::text[]))) AS all_finished
         FROM merged),
       fin AS (
         SELECT id, old_status, old_error, stages, still_failed,
           (old_status IN ('processing', 'failed') AND all_finished AND still_failed IS NULL) AS completes
         FROM judged)
       UPDATE photos p SET
         stages = fin.stages,
         status = CASE WHEN fin.completes THEN 'complete'
                       WHEN fin.old_status = 'failed' AND fin.still_failed IS NULL THEN 'processing'
                       ELSE fin.old_status END,
         error = CASE WHEN fin.old_status <> 'failed' THEN p.error
                      WHEN fin.still_failed IS NULL THEN NULL
                      WHEN fin.old_error ->> 'stage' <> fin.still_failed THEN jsonb_build_object('stage', fin.still_failed, 'reason', 'still failed: replay its dead letter too')
                      ELSE p.error END,
         completed_at = CASE WHEN fin.completes THEN now() ELSE p.completed_at END,
         stage_errors = NULLIF((COALESCE(p.stage_errors, '{}'::jsonb) - $9::text[]) || COALESCE($8::jsonb, '{}'::jsonb), '{}'::jsonb),
         ${extra.map((a) => `${a},`).join('\n         ')}
         updated_at = now(), progressed_at = now()
       FROM fin
       WHERE p.id = fin.id
       RETURNING ${photoColumns('p')}, fin.completes AS just_completed`,
      params,
    );
    const r = rows[0];
    if (!r) return null;
    return { row: toPhotoRow(r), justCompleted: r.just_completed };
  }

  /**
   * Terminal failure of a stage. A failure that arrives after the stage succeeded (a duplicate
   * delivery, a handler abandoned at its deadline that finished anyway) or after the photo reached
   * complete/duplicate changes nothing and is reported as moot: the photo's outcome stands.
   * The reason may quote file-derived text; one Postgres refused could never be recorded.
   */
  async recordFailure(ref: PhotoRef, f: StageFailure): Promise<'recorded' | 'moot' | 'missing'> {
    const { rowCount } = await this.db.query(
      `UPDATE photos SET status = 'failed',
         error = jsonb_build_object('stage', $2::text, 'reason', $3::text, 'code', $4::text, 'errorClass', $5::text, 'attempts', $6::int),
         stages = stages || jsonb_build_object($2::text, 'failed'),
         updated_at = now(), progressed_at = now()
       WHERE id = $1 AND tenant_id = $7 AND status NOT IN ('complete', 'duplicate') AND COALESCE(stages ->> $2, 'pending') <> 'done'`,
      [ref.photoId, f.stage, dbText(f.reason), f.code, f.errorClass, f.attempts, ref.tenantId],
    );
    if (rowCount === 1) return 'recorded';
    // Another tenant's photo counts as missing: nothing is recorded on it, and the letter says why.
    const { rows } = await this.db.query(`SELECT 1 FROM photos WHERE id = $1 AND tenant_id = $2`, [ref.photoId, ref.tenantId]);
    return rows.length > 0 ? 'moot' : 'missing';
  }

  /**
   * Before a dead letter is replayed: the stage is pending again, and the photo processing unless
   * another stage is still failed (then it stays failed until that one is replayed too, so it never
   * sits in processing waiting for a stage nobody runs). If the same content was uploaded again and
   * processed meanwhile, the failed photo cannot own it any more: it becomes a duplicate of the new
   * one instead, and the replayed message finds no work.
   */
  async reopenStage(ref: PhotoRef, stage: StageName): Promise<'reopened' | 'duplicate' | 'not_reopened' | 'expired'> {
    const id = ref.photoId;
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
         WHERE id = $1 AND tenant_id = $3 AND status IN ('failed', 'processing', 'queued') AND COALESCE(stages ->> $2, 'pending') <> 'done'
           AND blobs_dropped_at IS NULL`,
        [id, stage, ref.tenantId],
      );
      if (rowCount === 1) return 'reopened';
      const { rows } = await this.db.query<{ dropped: boolean }>(`SELECT blobs_dropped_at IS NOT NULL AS dropped FROM photos WHERE id = $1 AND tenant_id = $2`, [id, ref.tenantId]);
      return rows[0]?.dropped ? 'expired' : 'not_reopened';
    } catch (err) {
      if (!isUniqueViolation(err)) throw err; // the content has a new owner
    }
    return (await this.becomeDuplicate(id)) ? 'duplicate' : 'not_reopened';
  }

  /** The photo's content is owned by another photo now: it becomes that one's duplicate. */
  private async becomeDuplicate(id: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE photos SET status = 'duplicate', duplicate_of = owner.id, error = NULL,
         completed_at = now(), updated_at = now(), progressed_at = now()
       FROM (SELECT p.id FROM photos p, photos me
             WHERE me.id = $1 AND ${SAME_SCOPE} AND p.sha256 = me.sha256 AND p.id <> me.id AND ${OWNS_CONTENT} LIMIT 1) owner
       WHERE photos.id = $1`,
      [id],
    );
    return rowCount === 1;
  }

  /**
   * A complete photo's stage is to run again (re-geocoding after a change of provider or data): the
   * stage is pending, the photo stays complete. False when the photo is not complete.
   */
  async redoStage(ref: PhotoRef, stage: StageName): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE photos SET stages = stages || jsonb_build_object($3::text, 'pending'), updated_at = now()
       WHERE id = $1 AND tenant_id = $2 AND status = 'complete'`,
      [ref.photoId, ref.tenantId, stage],
    );
    return rowCount === 1;
  }

  /** A retry was scheduled or the reconciler republished the photo: the next stale check waits a full threshold again. */
  async touchProgress(id: string): Promise<void> {
    await this.db.query(`UPDATE photos SET progressed_at = now() WHERE id = $1 AND status IN ('queued', 'processing')`, [id]);
  }
}
