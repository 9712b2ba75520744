import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Config } from '../shared/config.js';
import type { Db } from '../shared/db.js';
import type { Logger } from '../shared/logger.js';
import { assertUrlAllowed, FetchError, safeFetchStream } from '../shared/net/index.js';
import type { OutputSpec } from '../db/photos/photo-row.js';
import type { BatchRepo, BatchRow } from '../db/batches/batch-repo.js';
import { batchUrlSchema, BatchInputError, checkListedUrl, readUrlList, type ListedUrl } from './url-list.js';
import type { FetchSetup } from './fetch-policy.js';

export interface StartBatchDeps {
  config: Pick<Config, 'BATCH_MAX_URLS' | 'BATCH_URL_MAX_LENGTH' | 'BATCH_LIST_MAX_BYTES' | 'BATCH_LIST_TIMEOUT_MS' | 'PUBLIC_BASE_URL'>;
  db: Db;
  repo: BatchRepo;
  fetch: FetchSetup;
  log: Logger;
  /** Wakes the customer's dispatcher; a failure is only logged (the dispatchers' sweep finds the batch). */
  kick: (tenantId: string) => Promise<void>;
}

export const OUTPUT_DEFAULTS: OutputSpec = { format: 'jpeg', maxSize: 2048, quality: 82 };
export const DEFAULT_MIN_BATCH_SIZE = 100;
export const DEFAULT_MAX_BATCH_SIZE = 1_000;

/** Headers photopipe sets itself on a call, which a customer's auth header may not replace. */
const RESERVED_HEADERS = new Set(['host', 'content-type', 'content-length', 'idempotency-key', 'transfer-encoding', 'connection', 'accept']);

export function batchRequestSchema(maxUrls: number, maxLength: number) {
  return z
    .object({
      urls: z.array(z.string().max(maxLength * 4)).max(maxUrls, `more than ${maxUrls} URLs`).optional(),
      listUrl: z.string().max(maxLength).optional(),
      output: z
        .object({
          format: z.enum(['jpeg', 'webp', 'png', 'avif']).default(OUTPUT_DEFAULTS.format),
          maxSize: z.number().int().min(16).max(16_384).default(OUTPUT_DEFAULTS.maxSize),
          quality: z.number().int().min(1).max(100).default(OUTPUT_DEFAULTS.quality),
        })
        .strict()
        .default(OUTPUT_DEFAULTS),
      minBatchSize: z.number().int().min(1).max(maxUrls).default(DEFAULT_MIN_BATCH_SIZE),
      maxBatchSize: z.number().int().min(1).max(maxUrls).default(DEFAULT_MAX_BATCH_SIZE),
      batchApi: z
        .object({
          endpoint: z.string().max(maxLength),
          mode: z.enum(['poll', 'webhook']),
          authHeader: z
            .object({
              name: z
                .string()
                .regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/, 'a header name')
                .refine((n) => !RESERVED_HEADERS.has(n.toLowerCase()), 'a header photopipe sets itself'),
              value: z
                .string()
                .min(1)
                .max(4_096)
                .regex(/^[\x20-\x7e]+$/, 'printable ASCII'),
            })
            .strict()
            .optional(),
        })
        .strict(),
    })
    .strict()
    .refine((r) => (r.urls === undefined) !== (r.listUrl === undefined), { message: 'give either urls or listUrl' })
    .refine((r) => r.minBatchSize <= r.maxBatchSize, { message: 'minBatchSize must not exceed maxBatchSize', path: ['minBatchSize'] });
}
export type BatchRequest = z.infer<ReturnType<typeof batchRequestSchema>>;

/** Rows per INSERT while items are written. */
const CHUNK = 1_000;

/**
 * Starts a batch (POST /v1/batches; knows nothing of HTTP): checks the request, then writes the
 * batch and one item per URL in one transaction, in chunks, reading a listUrl as a stream (a text
 * list or a JSON array), so that no more than a chunk of URLs is held whatever the list's size. A
 * refused URL (malformed, not http(s), over the count) rolls everything back and names its line.
 * The same Idempotency-Key again gives the batch it made. The dispatcher then takes over.
 */
export async function startBatch(deps: StartBatchDeps, tenantId: string, body: unknown, idempotencyKey: string | null): Promise<{ batch: BatchRow; created: boolean }> {
  const { config, repo } = deps;
  const parsed = batchRequestSchema(config.BATCH_MAX_URLS, config.BATCH_URL_MAX_LENGTH).safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') ?? '';
    throw new BatchInputError(path === 'urls' && issue?.code === 'too_big' ? 'too_many_urls' : 'invalid_batch', `${path || 'body'}: ${issue?.message ?? 'invalid'}`);
  }
  const req = parsed.data;
  if (idempotencyKey) {
    const existing = await repo.byIdempotencyKey(tenantId, idempotencyKey);
    if (existing) return { batch: existing, created: false };
  }
  if (req.batchApi.mode === 'webhook' && !config.PUBLIC_BASE_URL) {
    throw new BatchInputError('invalid_batch', 'batchApi.mode: webhook needs PUBLIC_BASE_URL on the server (the callback URL is absolute)');
  }
  await checkTarget(deps, req.batchApi.endpoint, 'batchApi.endpoint');
  if (req.listUrl !== undefined) await checkTarget(deps, req.listUrl, 'listUrl');

  const id = randomUUID();
  const client = await deps.db.connect();
  let total = 0;
  try {
    await client.query('BEGIN');
    const outcome = await repo.insertBatch(client, {
      id,
      tenantId,
      source: req.urls ? 'urls' : 'list',
      listUrl: req.listUrl ?? null,
      output: req.output,
      minBatchSize: req.minBatchSize,
      maxBatchSize: req.maxBatchSize,
      apiEndpoint: req.batchApi.endpoint,
      apiMode: req.batchApi.mode,
      apiAuthName: req.batchApi.authHeader?.name ?? null,
      apiAuthValue: req.batchApi.authHeader?.value ?? null,
      idempotencyKey,
    });
    if (outcome === 'exists') {
      await client.query('ROLLBACK');
      const existing = idempotencyKey ? await repo.byIdempotencyKey(tenantId, idempotencyKey) : null;
      if (!existing) throw new BatchInputError('invalid_batch', 'a batch with this Idempotency-Key is being created; try again');
      return { batch: existing, created: false };
    }
    let chunk: ListedUrl[] = [];
    const flush = async () => {
      await repo.insertItems(client, id, chunk);
      total += chunk.length;
      chunk = [];
    };
    for await (const entry of urlsOf(deps, req)) {
      chunk.push(entry);
      if (chunk.length >= CHUNK) await flush();
    }
    await flush();
    if (total === 0) throw new BatchInputError('invalid_batch', 'the batch has no URL');
    await repo.setTotal(client, id, total);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
  deps.log.info({ tenantId, batchId: id, total, source: req.urls ? 'urls' : 'list', mode: req.batchApi.mode }, 'batch started');
  await deps.kick(tenantId).catch((err: Error) => deps.log.warn({ err: err.message }, 'could not wake the dispatcher (its sweep will find the batch)'));
  const batch = await repo.get(tenantId, id);
  if (!batch) throw new Error(`batch ${id} vanished after its commit`);
  return { batch, created: true };
}

async function* urlsOf(deps: StartBatchDeps, req: BatchRequest): AsyncGenerator<ListedUrl> {
  const { config } = deps;
  if (req.urls) {
    const schema = batchUrlSchema(config.BATCH_URL_MAX_LENGTH);
    for (const [i, url] of req.urls.entries()) yield { line: i + 1, url: checkListedUrl({ line: i + 1, url: url.trim() }, schema) };
    return;
  }
  let res;
  try {
    res = await safeFetchStream(req.listUrl ?? '', {
      headers: { accept: 'text/plain, application/json' },
      policy: deps.fetch.policy,
      resolve: deps.fetch.resolve,
      timeoutMs: config.BATCH_LIST_TIMEOUT_MS,
      maxBytes: config.BATCH_LIST_MAX_BYTES,
    });
  } catch (err) {
    if (err instanceof FetchError) throw new BatchInputError('list_unreadable', `listUrl: ${err.message}`);
    throw err;
  }
  try {
    yield* readUrlList(res.body as AsyncIterable<Buffer>, { maxUrls: config.BATCH_MAX_URLS, maxLength: config.BATCH_URL_MAX_LENGTH });
  } catch (err) {
    if (err instanceof FetchError) throw new BatchInputError('list_unreadable', `listUrl: ${err.message}`);
    throw err;
  } finally {
    res.body.destroy();
  }
}

/** A URL we will fetch (the list, the customer's API): refused now, with the reason, when its address may not be fetched. */
async function checkTarget(deps: StartBatchDeps, url: string, field: string): Promise<void> {
  try {
    await assertUrlAllowed(url, { policy: deps.fetch.policy, resolve: deps.fetch.resolve });
  } catch (err) {
    if (err instanceof FetchError) throw new BatchInputError('invalid_batch', `${field}: ${err.message}`);
    throw err;
  }
}
