import type pg from 'pg';
import type { Db } from '../../shared/db.js';
import { isUniqueViolation, positionOf, type OutputSpec } from '../photos/photo-row.js';

export type BatchStatus = 'running' | 'complete' | 'complete_with_failures' | 'cancelled' | 'failed';
export type ItemStatus = 'pending' | 'queued' | 'accepted' | 'ready' | 'handed' | 'failed' | 'cancelled';
export type CallStatus = 'starting' | 'running' | 'succeeded' | 'failed' | 'refused' | 'abandoned';
export type ApiMode = 'poll' | 'webhook';

export interface ItemError {
  code: string;
  reason: string;
  stage?: string;
}

export interface BatchRow {
  id: string;
  tenantId: string;
  status: BatchStatus;
  source: 'urls' | 'list';
  listUrl: string | null;
  output: OutputSpec;
  minBatchSize: number;
  maxBatchSize: number;
  apiEndpoint: string;
  apiMode: ApiMode;
  apiAuthName: string | null;
  apiAuthValue: string | null;
  total: number;
  error: ItemError | null;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
}

interface BatchDbRow {
  id: string;
  tenant_id: string;
  status: BatchStatus;
  source: 'urls' | 'list';
  list_url: string | null;
  output: OutputSpec;
  min_batch_size: number;
  max_batch_size: number;
  api_endpoint: string;
  api_mode: ApiMode;
  api_auth_name: string | null;
  api_auth_value: string | null;
  total: number;
  error: ItemError | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

const BATCH_COLUMNS = `id, tenant_id, status, source, list_url, output, min_batch_size, max_batch_size, api_endpoint, api_mode,
  api_auth_name, api_auth_value, total, error, created_at, updated_at, finished_at`;

function toBatch(r: BatchDbRow): BatchRow {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    status: r.status,
    source: r.source,
    listUrl: r.list_url,
    output: r.output,
    minBatchSize: r.min_batch_size,
    maxBatchSize: r.max_batch_size,
    apiEndpoint: r.api_endpoint,
    apiMode: r.api_mode,
    apiAuthName: r.api_auth_name,
    apiAuthValue: r.api_auth_value,
    total: r.total,
    error: r.error,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}

export interface CallRow {
  batchId: string;
  seq: number;
  tenantId: string;
  status: CallStatus;
  size: number;
  idempotencyKey: string;
  callbackToken: string | null;
  fence: number;
  jobId: string | null;
  attempts: number;
  error: ItemError | null;
  startedAt: Date;
  acceptedAt: Date | null;
  finishedAt: Date | null;
  nextPollAt: Date | null;
}

interface CallDbRow {
  batch_id: string;
  seq: number;
  tenant_id: string;
  status: CallStatus;
  size: number;
  idempotency_key: string;
  callback_token: string | null;
  fence: string;
  job_id: string | null;
  attempts: number;
  error: ItemError | null;
  started_at: Date;
  accepted_at: Date | null;
  finished_at: Date | null;
  next_poll_at: Date | null;
}

const CALL_COLUMNS = `batch_id, seq, tenant_id, status, size, idempotency_key, callback_token, fence, job_id, attempts, error, started_at, accepted_at, finished_at, next_poll_at`;

function toCall(r: CallDbRow): CallRow {
  return {
    batchId: r.batch_id,
    seq: r.seq,
    tenantId: r.tenant_id,
    status: r.status,
    size: r.size,
    idempotencyKey: r.idempotency_key,
    callbackToken: r.callback_token,
    // bigint comes back as text; a fence fits a double for any realistic number of takeovers.
    fence: Number(r.fence),
    jobId: r.job_id,
    attempts: r.attempts,
    error: r.error,
    startedAt: r.started_at,
    acceptedAt: r.accepted_at,
    finishedAt: r.finished_at,
    nextPollAt: r.next_poll_at,
  };
}

export interface NewBatch {
  id: string;
  tenantId: string;
  source: 'urls' | 'list';
  listUrl: string | null;
  output: OutputSpec;
  minBatchSize: number;
  maxBatchSize: number;
  apiEndpoint: string;
  apiMode: ApiMode;
  apiAuthName: string | null;
  apiAuthValue: string | null;
  idempotencyKey: string | null;
}

export interface BatchCounts {
  total: number;
  downloaded: number;
  converted: number;
  stored: number;
  handedOver: number;
  failed: number;
  cancelled: number;
  waiting: number;
}

export interface DownloadItem {
  tenantId: string;
  batchStatus: BatchStatus;
  output: OutputSpec;
  status: ItemStatus;
  url: string;
  photoId: string;
}

export interface BatchPlan {
  id: string;
  minBatchSize: number;
  maxBatchSize: number;
  ready: number;
  moreToCome: boolean;
  calls: number;
}

/** Item states in which an item may still become ready. */
const OPEN_STATES = `('pending', 'queued', 'accepted')`;

/**
 * Batches, their items (one per URL) and their calls to the customer's batch API. Every state
 * change is one guarded statement (`WHERE status = ...`), so a repeated or concurrent step
 * (a redelivered message, two dispatchers) changes nothing the second time.
 */
export class BatchRepo {
  constructor(private readonly db: Db) {}

  // ------------------------------------------------------------------ creation (one transaction)

  async insertBatch(client: pg.PoolClient, b: NewBatch): Promise<'inserted' | 'exists'> {
    try {
      await client.query('SAVEPOINT insert_batch');
      await client.query(
        `INSERT INTO batches (id, tenant_id, status, source, list_url, output, min_batch_size, max_batch_size, api_endpoint, api_mode, api_auth_name, api_auth_value, total, idempotency_key)
         VALUES ($1, $2, 'running', $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, 0, $12)`,
        [b.id, b.tenantId, b.source, b.listUrl, JSON.stringify(b.output), b.minBatchSize, b.maxBatchSize, b.apiEndpoint, b.apiMode, b.apiAuthName, b.apiAuthValue, b.idempotencyKey],
      );
      await client.query('RELEASE SAVEPOINT insert_batch');
      return 'inserted';
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT insert_batch');
      return 'exists';
    }
  }

  /** One chunk of items; their photo ids are drawn by Postgres now, once. */
  async insertItems(client: pg.PoolClient, batchId: string, items: readonly { line: number; url: string }[]): Promise<void> {
    if (items.length === 0) return;
    await client.query(
      `INSERT INTO batch_items (batch_id, seq, url) SELECT $1, s, u FROM unnest($2::int[], $3::text[]) AS t(s, u) ON CONFLICT DO NOTHING`,
      [batchId, items.map((i) => i.line), items.map((i) => i.url)],
    );
  }

  async setTotal(client: pg.PoolClient, batchId: string, total: number): Promise<void> {
    await client.query(`UPDATE batches SET total = $2, updated_at = now() WHERE id = $1`, [batchId, total]);
  }

  async byIdempotencyKey(tenantId: string, key: string): Promise<BatchRow | null> {
    const { rows } = await this.db.query<BatchDbRow>(`SELECT ${BATCH_COLUMNS} FROM batches WHERE tenant_id = $1 AND idempotency_key = $2`, [tenantId, key]);
    return rows[0] ? toBatch(rows[0]) : null;
  }

  // ------------------------------------------------------------------ reads (API)

  async get(tenantId: string, id: string): Promise<BatchRow | null> {
    const { rows } = await this.db.query<BatchDbRow>(`SELECT ${BATCH_COLUMNS} FROM batches WHERE id = $1 AND tenant_id = $2`, [id, tenantId]);
    return rows[0] ? toBatch(rows[0]) : null;
  }

  async list(tenantId: string, opts: { limit: number; before?: { createdAt: string; id: string } }): Promise<{ items: BatchRow[]; next: { createdAt: string; id: string } | null }> {
    const params: unknown[] = [tenantId];
    let where = 'tenant_id = $1';
    if (opts.before) {
      params.push(opts.before.createdAt, opts.before.id);
      where += ` AND (created_at, id) < ($2::timestamptz, $3::uuid)`;
    }
    params.push(opts.limit + 1);
    const { rows } = await this.db.query<BatchDbRow & { position: string }>(
      `SELECT ${BATCH_COLUMNS}, ${positionOf('created_at')} AS position FROM batches WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    const page = rows.slice(0, opts.limit);
    const last = page[page.length - 1];
    return { items: page.map(toBatch), next: rows.length > opts.limit && last ? { createdAt: last.position, id: last.id } : null };
  }

  async counts(batchId: string): Promise<BatchCounts> {
    const { rows } = await this.db.query<{ [K in keyof BatchCounts]: number }>(
      `SELECT count(*)::int AS total,
         count(*) FILTER (WHERE i.downloaded_at IS NOT NULL)::int AS downloaded,
         count(*) FILTER (WHERE i.output_url IS NOT NULL OR p.stages ->> 'convert' = 'done')::int AS converted,
         count(*) FILTER (WHERE i.output_url IS NOT NULL OR p.stages ->> 'store' = 'done')::int AS stored,
         count(*) FILTER (WHERE i.status = 'handed')::int AS "handedOver",
         count(*) FILTER (WHERE i.status = 'failed')::int AS failed,
         count(*) FILTER (WHERE i.status = 'cancelled')::int AS cancelled,
         count(*) FILTER (WHERE i.status IN ('pending', 'queued', 'accepted', 'ready'))::int AS waiting
       FROM batch_items i LEFT JOIN photos p ON i.status = 'accepted' AND p.id = i.photo_id
       WHERE i.batch_id = $1`,
      [batchId],
    );
    return rows[0] ?? { total: 0, downloaded: 0, converted: 0, stored: 0, handedOver: 0, failed: 0, cancelled: 0, waiting: 0 };
  }

  /** The batch's calls, newest first (at most limit), and how many there are. */
  async calls(batchId: string, limit: number): Promise<{ items: CallRow[]; total: number }> {
    const { rows } = await this.db.query<CallDbRow & { total: number }>(
      `SELECT ${CALL_COLUMNS}, count(*) OVER ()::int AS total FROM batch_calls WHERE batch_id = $1 ORDER BY seq DESC LIMIT $2`,
      [batchId, limit],
    );
    return { items: rows.map(toCall), total: rows[0]?.total ?? 0 };
  }

  /** Failed items after line `after`, by line. */
  async failures(batchId: string, opts: { after: number; limit: number }): Promise<{ items: { line: number; url: string; error: ItemError | null }[]; next: number | null }> {
    const { rows } = await this.db.query<{ seq: number; url: string; error: ItemError | null }>(
      `SELECT seq, url, error FROM batch_items WHERE batch_id = $1 AND status = 'failed' AND seq > $2 ORDER BY seq LIMIT $3`,
      [batchId, opts.after, opts.limit + 1],
    );
    const page = rows.slice(0, opts.limit);
    return { items: page.map((r) => ({ line: r.seq, url: r.url, error: r.error })), next: rows.length > opts.limit ? (page[page.length - 1]?.seq ?? null) : null };
  }

  /** Cancels a running batch: no new call starts, items not handed over stop. False when it was not running. */
  async cancel(tenantId: string, id: string): Promise<boolean> {
    const client = await this.db.connect();
    try {
      await client.query('BEGIN');
      const { rowCount } = await client.query(
        `UPDATE batches SET status = 'cancelled', finished_at = now(), updated_at = now() WHERE id = $1 AND tenant_id = $2 AND status = 'running'`,
        [id, tenantId],
      );
      if (rowCount === 1) {
        await client.query(`UPDATE batch_items SET status = 'cancelled', updated_at = now() WHERE batch_id = $1 AND status IN ('pending', 'queued', 'accepted', 'ready')`, [id]);
      }
      await client.query('COMMIT');
      return rowCount === 1;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  // ------------------------------------------------------------------ downloads

  async itemForDownload(batchId: string, seq: number): Promise<DownloadItem | null> {
    const { rows } = await this.db.query<{ tenant_id: string; batch_status: BatchStatus; output: OutputSpec; status: ItemStatus; url: string; photo_id: string }>(
      `SELECT b.tenant_id, b.status AS batch_status, b.output, i.status, i.url, i.photo_id
       FROM batch_items i JOIN batches b ON b.id = i.batch_id WHERE i.batch_id = $1 AND i.seq = $2`,
      [batchId, seq],
    );
    const r = rows[0];
    return r ? { tenantId: r.tenant_id, batchStatus: r.batch_status, output: r.output, status: r.status, url: r.url, photoId: r.photo_id } : null;
  }

  /** The item's photo was accepted (its bytes are in Redis, its row and message made). */
  async markDownloaded(batchId: string, seq: number): Promise<void> {
    await this.db.query(
      `UPDATE batch_items SET status = 'accepted', downloaded_at = now(), updated_at = now() WHERE batch_id = $1 AND seq = $2 AND status IN ('pending', 'queued')`,
      [batchId, seq],
    );
  }

  /** A download that will not succeed. Only before the item was downloaded (a late failure of a redelivery is moot). */
  async failDownload(batchId: string, seq: number, error: ItemError): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE batch_items SET status = 'failed', error = $3::jsonb, updated_at = now() WHERE batch_id = $1 AND seq = $2 AND status IN ('pending', 'queued')`,
      [batchId, seq, JSON.stringify(error)],
    );
    return rowCount === 1;
  }

  // ------------------------------------------------------------------ dispatch

  /** Customers with a running batch or an open call (a cancelled batch's call in flight still needs its polls). */
  async activeTenants(): Promise<string[]> {
    const { rows } = await this.db.query<{ tenant_id: string }>(
      `SELECT tenant_id FROM batches WHERE status = 'running' UNION SELECT tenant_id FROM batch_calls WHERE status IN ('starting', 'running')`,
    );
    return rows.map((r) => r.tenant_id);
  }

  async hasRunningBatch(tenantId: string): Promise<boolean> {
    const { rows } = await this.db.query(`SELECT 1 FROM batches WHERE tenant_id = $1 AND status = 'running' LIMIT 1`, [tenantId]);
    return rows.length > 0;
  }

  async runningBatches(tenantId: string): Promise<BatchRow[]> {
    const { rows } = await this.db.query<BatchDbRow>(`SELECT ${BATCH_COLUMNS} FROM batches WHERE tenant_id = $1 AND status = 'running' ORDER BY created_at, id`, [tenantId]);
    return rows.map(toBatch);
  }

  async batchById(id: string): Promise<BatchRow | null> {
    const { rows } = await this.db.query<BatchDbRow>(`SELECT ${BATCH_COLUMNS} FROM batches WHERE id = $1`, [id]);
    return rows[0] ? toBatch(rows[0]) : null;
  }

  /**
   * Items whose photo reached a final state become ready (with the public URL of the converted
   * image: their own photo's, or, for a duplicate, that of the photo owning the same content) or
   * failed (with the photo's failure, or its owner's). A duplicate whose owner is still in the
   * pipeline waits for it. Returns how many items changed.
   */
  async resolveFinished(batchIds: readonly string[]): Promise<number> {
    if (batchIds.length === 0) return 0;
    const { rowCount } = await this.db.query(
      `UPDATE batch_items i SET
         status = CASE WHEN r.url IS NOT NULL THEN 'ready' ELSE 'failed' END,
         output_url = r.url,
         error = CASE WHEN r.url IS NULL THEN r.err END,
         ready_at = CASE WHEN r.url IS NOT NULL THEN now() END,
         updated_at = now()
       FROM (
         SELECT i.batch_id, i.seq, v.url,
           COALESCE(CASE WHEN p.status = 'failed' THEN p.error END, CASE WHEN o.status = 'failed' THEN o.error END,
                    jsonb_build_object('code', 'no_output', 'reason', 'the photo completed without a converted image')) AS err
         FROM batch_items i
         JOIN photos p ON p.id = i.photo_id
         LEFT JOIN photos o ON p.status = 'duplicate' AND o.id = p.duplicate_of
         LEFT JOIN photo_variants v ON v.kind = 'converted' AND v.photo_id = CASE WHEN p.status = 'duplicate' THEN o.id ELSE p.id END
         WHERE i.batch_id = ANY($1::uuid[]) AND i.status = 'accepted'
           AND (p.status IN ('complete', 'failed') OR (p.status = 'duplicate' AND o.status IN ('complete', 'failed')))
       ) r
       WHERE i.batch_id = r.batch_id AND i.seq = r.seq AND i.status = 'accepted'`,
      [batchIds],
    );
    return rowCount ?? 0;
  }

  /**
   * Items of a batch to release for download now: pending ones, in line order, as many as keep
   * the batch's items in flight (released and not final) within `window`. Runs `publish` on them
   * inside the transaction that marks them queued, so a crash between the two leaves them pending
   * (released again later; a repeated download message finds the work done).
   */
  async release(batchId: string, window: number, publish: (seqs: number[]) => Promise<void>): Promise<number> {
    const client = await this.db.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ seq: number }>(
        `SELECT seq FROM batch_items WHERE batch_id = $1 AND status = 'pending' ORDER BY seq
         LIMIT GREATEST(0, $2 - (SELECT count(*) FROM batch_items WHERE batch_id = $1 AND status IN ('queued', 'accepted')))
         FOR UPDATE SKIP LOCKED`,
        [batchId, window],
      );
      const seqs = rows.map((r) => r.seq);
      if (seqs.length > 0) {
        await publish(seqs);
        await client.query(`UPDATE batch_items SET status = 'queued', queued_at = now(), updated_at = now() WHERE batch_id = $1 AND seq = ANY($2::int[]) AND status = 'pending'`, [batchId, seqs]);
      }
      await client.query('COMMIT');
      return seqs.length;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  /** Released items still not downloaded after `staleMs` (their message may be lost): their clock restarts, the caller republishes. */
  async staleQueued(batchId: string, staleMs: number, limit: number): Promise<number[]> {
    const { rows } = await this.db.query<{ seq: number }>(
      `UPDATE batch_items SET queued_at = now() WHERE (batch_id, seq) IN (
         SELECT batch_id, seq FROM batch_items WHERE batch_id = $1 AND status = 'queued' AND queued_at < now() - make_interval(secs => $2::double precision / 1000) ORDER BY seq LIMIT $3)
       RETURNING seq`,
      [batchId, staleMs, limit],
    );
    return rows.map((r) => r.seq);
  }

  /** What decides whether each running batch of a customer starts a call now, oldest batch first. */
  async plans(tenantId: string): Promise<BatchPlan[]> {
    const { rows } = await this.db.query<{ id: string; min_batch_size: number; max_batch_size: number; ready: number; more: boolean; calls: number }>(
      `SELECT b.id, b.min_batch_size, b.max_batch_size,
         (SELECT count(*) FROM (SELECT 1 FROM batch_items WHERE batch_id = b.id AND status = 'ready' LIMIT GREATEST(b.min_batch_size, 1)) x)::int AS ready,
         EXISTS (SELECT 1 FROM batch_items WHERE batch_id = b.id AND status IN ${OPEN_STATES}) AS more,
         (SELECT count(*) FROM batch_calls WHERE batch_id = b.id AND status <> 'refused')::int AS calls
       FROM batches b WHERE b.tenant_id = $1 AND b.status = 'running' ORDER BY b.created_at, b.id`,
      [tenantId],
    );
    return rows.map((r) => ({ id: r.id, minBatchSize: r.min_batch_size, maxBatchSize: r.max_batch_size, ready: r.ready, moreToCome: r.more, calls: r.calls }));
  }

  /** The customer's open call (starting or running), if any: there is at most one (a unique index). */
  async openCall(tenantId: string): Promise<CallRow | null> {
    const { rows } = await this.db.query<CallDbRow>(`SELECT ${CALL_COLUMNS} FROM batch_calls WHERE tenant_id = $1 AND status IN ('starting', 'running')`, [tenantId]);
    return rows[0] ? toCall(rows[0]) : null;
  }

  async call(batchId: string, seq: number): Promise<CallRow | null> {
    const { rows } = await this.db.query<CallDbRow>(`SELECT ${CALL_COLUMNS} FROM batch_calls WHERE batch_id = $1 AND seq = $2`, [batchId, seq]);
    return rows[0] ? toCall(rows[0]) : null;
  }

  /**
   * Opens the customer's next call with the batch's ready items (up to maxBatchSize, oldest
   * first), in one transaction: the call row (status starting) and the items handed to it. Null
   * when the customer already has an open call (the unique index refused a second one) or nothing
   * is ready any more.
   */
  async openNewCall(tenantId: string, batchId: string, maxSize: number, ids: { idempotencyKey: (seq: number) => string; callbackToken: string | null }): Promise<CallRow | null> {
    const client = await this.db.connect();
    try {
      await client.query('BEGIN');
      const { rows: seqRows } = await client.query<{ seq: number }>(`SELECT COALESCE(max(seq), 0) + 1 AS seq FROM batch_calls WHERE batch_id = $1`, [batchId]);
      const seq = seqRows[0]?.seq ?? 1;
      try {
        await client.query(
          `INSERT INTO batch_calls (batch_id, seq, tenant_id, status, size, idempotency_key, callback_token) VALUES ($1, $2, $3, 'starting', 0, $4, $5)`,
          [batchId, seq, tenantId, ids.idempotencyKey(seq), ids.callbackToken],
        );
      } catch (err) {
        if (isUniqueViolation(err)) {
          await client.query('ROLLBACK');
          return null;
        }
        throw err;
      }
      const { rowCount } = await client.query(
        `UPDATE batch_items SET status = 'handed', call_seq = $2, updated_at = now()
         WHERE (batch_id, seq) IN (SELECT batch_id, seq FROM batch_items WHERE batch_id = $1 AND status = 'ready' ORDER BY ready_at, seq LIMIT $3 FOR UPDATE)`,
        [batchId, seq, maxSize],
      );
      if (!rowCount) {
        await client.query('ROLLBACK');
        return null;
      }
      const { rows } = await client.query<CallDbRow>(`UPDATE batch_calls SET size = $3 WHERE batch_id = $1 AND seq = $2 RETURNING ${CALL_COLUMNS}`, [batchId, seq, rowCount]);
      await client.query('COMMIT');
      return rows[0] ? toCall(rows[0]) : null;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  /** The public URLs handed to a call, in line order: the same list every time it is asked (a resent start is identical). */
  async callUrls(batchId: string, seq: number): Promise<string[]> {
    const { rows } = await this.db.query<{ output_url: string }>(
      `SELECT output_url FROM batch_items WHERE batch_id = $1 AND call_seq = $2 ORDER BY seq`,
      [batchId, seq],
    );
    return rows.map((r) => r.output_url);
  }

  /**
   * Takes the open call over: its fence grows by one and the new value is this dispatcher's. Every
   * write that depends on holding the call names it, so a dispatcher that was paused (and lost
   * the call to another) writes nothing when it wakes. Null when the call is closed.
   */
  async claim(batchId: string, seq: number): Promise<CallRow | null> {
    const { rows } = await this.db.query<CallDbRow>(
      `UPDATE batch_calls SET fence = fence + 1 WHERE batch_id = $1 AND seq = $2 AND status IN ('starting', 'running') RETURNING ${CALL_COLUMNS}`,
      [batchId, seq],
    );
    return rows[0] ? toCall(rows[0]) : null;
  }

  /** The customer accepted the start: its job id. Only by the fence holder, only once. */
  async markRunning(c: { batchId: string; seq: number; fence: number }, jobId: string, nextPollAt: Date | null): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE batch_calls SET status = 'running', job_id = $4, accepted_at = now(), next_poll_at = $5
       WHERE batch_id = $1 AND seq = $2 AND fence = $3 AND status = 'starting'`,
      [c.batchId, c.seq, c.fence, jobId, nextPollAt],
    );
    return rowCount === 1;
  }

  /** When the holder acts on the call next (the next poll, or the next try of a failed start). */
  async postpone(c: { batchId: string; seq: number; fence: number }, at: Date, attempt: { error: ItemError } | null): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE batch_calls SET next_poll_at = $4, attempts = attempts + $5::int, error = COALESCE($6::jsonb, error)
       WHERE batch_id = $1 AND seq = $2 AND fence = $3 AND status IN ('starting', 'running')`,
      [c.batchId, c.seq, c.fence, at, attempt ? 1 : 0, attempt ? JSON.stringify(attempt.error) : null],
    );
    return rowCount === 1;
  }

  /**
   * The customer said the call's job is over (a poll answer or its callback): a fact, recorded
   * by whoever learns it first, fence or not. A failed job fails its items (they were handed
   * over; they are never handed over again). False when the call was already closed.
   */
  async finishCall(batchId: string, seq: number, outcome: 'succeeded' | 'failed', detail: { jobId?: string; error?: ItemError }): Promise<boolean> {
    const client = await this.db.connect();
    try {
      await client.query('BEGIN');
      const { rowCount } = await client.query(
        `UPDATE batch_calls SET status = $3, finished_at = now(), next_poll_at = NULL, job_id = COALESCE(job_id, $4), error = COALESCE($5::jsonb, error),
           accepted_at = COALESCE(accepted_at, now())
         WHERE batch_id = $1 AND seq = $2 AND status IN ('starting', 'running')`,
        [batchId, seq, outcome, detail.jobId ?? null, detail.error ? JSON.stringify(detail.error) : null],
      );
      if (rowCount === 1 && outcome === 'failed') {
        const error: ItemError = { code: 'batch_job_failed', reason: detail.error?.reason ?? 'the batch API reported that the job handling these images failed' };
        await client.query(`UPDATE batch_items SET status = 'failed', error = $3::jsonb, updated_at = now() WHERE batch_id = $1 AND call_seq = $2 AND status = 'handed'`, [
          batchId,
          seq,
          JSON.stringify(error),
        ]);
      }
      await client.query('COMMIT');
      return rowCount === 1;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  /**
   * The holder gives up on a call that never started at the customer (refused, or no answer after
   * every attempt): the call is closed with that status, its items were never handed over (ready
   * again, for the record) and the batch fails with the reason.
   */
  async giveUp(c: { batchId: string; seq: number; fence: number }, status: 'refused' | 'abandoned', error: ItemError): Promise<boolean> {
    const client = await this.db.connect();
    try {
      await client.query('BEGIN');
      const { rowCount } = await client.query(
        `UPDATE batch_calls SET status = $4, error = $5::jsonb, finished_at = now(), next_poll_at = NULL
         WHERE batch_id = $1 AND seq = $2 AND fence = $3 AND status = 'starting'`,
        [c.batchId, c.seq, c.fence, status, JSON.stringify(error)],
      );
      if (rowCount === 1) {
        await client.query(`UPDATE batch_items SET status = 'ready', call_seq = NULL, updated_at = now() WHERE batch_id = $1 AND call_seq = $2 AND status = 'handed'`, [c.batchId, c.seq]);
        await client.query(`UPDATE batches SET status = 'failed', error = $2::jsonb, finished_at = now(), updated_at = now() WHERE id = $1 AND status = 'running'`, [
          c.batchId,
          JSON.stringify(error),
        ]);
      }
      await client.query('COMMIT');
      return rowCount === 1;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  /** Running batches of the customer with nothing left to do become complete (or complete_with_failures). */
  async finishBatches(tenantId: string): Promise<{ id: string; status: BatchStatus }[]> {
    const { rows } = await this.db.query<{ id: string; status: BatchStatus }>(
      `UPDATE batches b SET
         status = CASE WHEN EXISTS (SELECT 1 FROM batch_items WHERE batch_id = b.id AND status = 'failed') THEN 'complete_with_failures' ELSE 'complete' END,
         finished_at = now(), updated_at = now()
       WHERE b.tenant_id = $1 AND b.status = 'running'
         AND NOT EXISTS (SELECT 1 FROM batch_items WHERE batch_id = b.id AND status IN ('pending', 'queued', 'accepted', 'ready'))
         AND NOT EXISTS (SELECT 1 FROM batch_calls WHERE batch_id = b.id AND status IN ('starting', 'running'))
       RETURNING b.id, b.status`,
      [tenantId],
    );
    return rows;
  }
}
