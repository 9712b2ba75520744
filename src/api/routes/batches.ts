import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { HttpError, ServiceUnavailableError } from '../../shared/errors.js';
import { BatchRepo } from '../../db/batches/batch-repo.js';
import { startBatch } from '../../batches/start-batch.js';
import { BatchInputError } from '../../batches/url-list.js';
import { fetchSetup } from '../../batches/fetch-policy.js';
import { DispatchKicker } from '../../batches/dispatch-kicker.js';
import { batchStatusUrl, toBatchSummary, toBatchView } from '../batch-view.js';
import { decodeCursor, encodeCursor, intParam, queryError, uuidParam } from '../query.js';
import { tenantOf } from '../route-auth.js';
import type { ApiDeps } from '../api-deps.js';

const pageQuery = z.object({
  limit: intParam(1, 200, 50),
  cursor: z.preprocess((v) => (v === '' ? undefined : v), z.string().max(200).optional()),
});
const viewQuery = z.object({
  failuresLimit: intParam(1, 1_000, 100),
  failuresCursor: z.preprocess((v) => (v === '' ? undefined : v), z.string().regex(/^\d{1,9}$/).optional()),
});
const seqParam = z.string().regex(/^[1-9]\d{0,8}$/).transform(Number);
const callbackBody = z.object({
  status: z.enum(['succeeded', 'failed']),
  jobId: z.string().min(1).max(200).optional(),
  error: z.string().max(1_000).optional(),
});
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;
/** A callback's body: its outcome, nothing more. */
const CALLBACK_BODY_LIMIT = 4 * 1024;
const BEARER = /^Bearer[ \t]+(\S{1,200})[ \t]*$/i;

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Batches being created at once by one API process. Creating one holds a database connection in a
 * transaction while its URLs are checked and written (and a listUrl is read, up to
 * BATCH_LIST_TIMEOUT_MS): bounded, so that imports can never take the pool that every other
 * request needs. Past it: 503 with Retry-After.
 */
const MAX_CONCURRENT_CREATIONS = 2;

/**
 * Batch ingestion over HTTP: start, read, list and cancel batches (tenant key), and the callback
 * a customer's batch API calls when a call's job is over (webhook mode: no tenant key, an
 * unguessable per-call token instead, checked before any of the body is read).
 */
export function registerBatchRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { config } = deps;
  const repo = new BatchRepo(deps.db);
  const kicker = new DispatchKicker(deps.broker, deps.log);
  const base = config.PUBLIC_BASE_URL;
  const startDeps = { config, db: deps.db, repo, fetch: fetchSetup(config), log: deps.log, kick: (t: string) => kicker.now(t) };
  let creating = 0;

  app.post('/v1/batches', { config: { auth: 'tenant' }, bodyLimit: config.BATCH_BODY_MAX_BYTES }, async (req, reply) => {
    const tenantId = tenantOf(req);
    const header = req.headers['idempotency-key'];
    const key = Array.isArray(header) ? header[0] : header;
    if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) throw new HttpError(400, 'invalid_batch', 'Idempotency-Key: 1-200 printable ASCII characters');
    if (creating >= MAX_CONCURRENT_CREATIONS) throw new ServiceUnavailableError('other batches are being created, try again shortly', 2);
    creating += 1;
    let result;
    try {
      result = await startBatch(startDeps, tenantId, req.body, key ?? null);
    } catch (err) {
      if (err instanceof BatchInputError) throw new HttpError(400, err.code, err.message);
      throw err;
    } finally {
      creating -= 1;
    }
    const url = batchStatusUrl(base, result.batch.id);
    return reply
      .code(result.created ? 202 : 200)
      .header('location', url)
      .send({ id: result.batch.id, status: result.batch.status, total: result.batch.total, statusUrl: url });
  });

  app.get<{ Params: { id: string } }>('/v1/batches/:id', { config: { auth: 'tenant' } }, async (req) => {
    const tenantId = tenantOf(req);
    if (!uuidParam.safeParse(req.params.id).success) throw new HttpError(404, 'not_found', 'no such batch');
    const q = viewQuery.safeParse(req.query);
    if (!q.success) throw queryError('invalid_query', q.error);
    const batch = await repo.get(tenantId, req.params.id);
    if (!batch) throw new HttpError(404, 'not_found', 'no such batch');
    const [counts, calls, failures] = await Promise.all([
      repo.counts(batch.id),
      repo.calls(batch.id, 200),
      repo.failures(batch.id, { after: q.data.failuresCursor ? Number(q.data.failuresCursor) : 0, limit: q.data.failuresLimit }),
    ]);
    return toBatchView(batch, counts, calls, { items: failures.items, nextCursor: failures.next === null ? null : String(failures.next) }, base);
  });

  app.get('/v1/batches', { config: { auth: 'tenant' } }, async (req) => {
    const tenantId = tenantOf(req);
    const q = pageQuery.safeParse(req.query);
    if (!q.success) throw queryError('invalid_query', q.error);
    const page = await repo.list(tenantId, { limit: q.data.limit, before: q.data.cursor ? decodeCursor(q.data.cursor) : undefined });
    return { items: page.items.map((b) => toBatchSummary(b, base)), nextCursor: page.next ? encodeCursor(page.next) : null };
  });

  app.delete<{ Params: { id: string } }>('/v1/batches/:id', { config: { auth: 'tenant', bodyless: true } }, async (req, reply) => {
    const tenantId = tenantOf(req);
    if (!uuidParam.safeParse(req.params.id).success) throw new HttpError(404, 'not_found', 'no such batch');
    const batch = await repo.get(tenantId, req.params.id);
    if (!batch) throw new HttpError(404, 'not_found', 'no such batch');
    const cancelled = await repo.cancel(tenantId, batch.id);
    if (cancelled) {
      deps.log.info({ tenantId, batchId: batch.id }, 'batch cancelled');
      await kicker.now(tenantId).catch(() => {});
    }
    const now = await repo.get(tenantId, batch.id);
    return reply.code(cancelled ? 202 : 200).send(toBatchSummary(now ?? batch, base));
  });

  // Which call a checked callback is about (onRequest checks the token before the body is read).
  const checked = new WeakMap<FastifyRequest, { batchId: string; seq: number }>();
  const unauthorized = () => new HttpError(401, 'unauthorized', 'unknown call or wrong callback token');
  app.post<{ Params: { id: string; seq: string } }>(
    '/v1/batches/:id/callbacks/:seq',
    {
      config: { auth: 'none' },
      bodyLimit: CALLBACK_BODY_LIMIT,
      onRequest: async (req) => {
        const { id, seq } = req.params as { id: string; seq: string };
        const s = seqParam.safeParse(seq);
        const token = BEARER.exec(req.headers.authorization ?? '')?.[1];
        if (!uuidParam.safeParse(id).success || !s.success || !token) throw unauthorized();
        const call = await repo.call(id, s.data);
        // Compared as digests in constant time: neither the token nor its length leaks by timing.
        if (!call?.callbackToken || !timingSafeEqual(digest(call.callbackToken), digest(token))) throw unauthorized();
        checked.set(req, { batchId: id, seq: s.data });
      },
    },
    async (req, reply) => {
      const call = checked.get(req);
      if (!call) throw unauthorized();
      const body = callbackBody.safeParse(req.body);
      if (!body.success) throw new HttpError(400, 'invalid_callback', body.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
      const closed = await repo.finishCall(call.batchId, call.seq, body.data.status, {
        jobId: body.data.jobId,
        ...(body.data.status === 'failed' ? { error: { code: 'batch_job_failed', reason: body.data.error ?? 'the batch API reported the job failed' } } : {}),
      });
      const batch = await repo.batchById(call.batchId);
      if (closed && batch) {
        deps.log.info({ batchId: call.batchId, seq: call.seq, outcome: body.data.status }, 'batch API call finished (callback)');
        await kicker.now(batch.tenantId).catch(() => {});
      }
      return reply.code(204).send();
    },
  );
}
