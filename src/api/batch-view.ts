import type { BatchCounts, BatchRow, CallRow, ItemError } from '../db/batches/batch-repo.js';
import { publicFailure } from './failure-reasons.js';

/** Codes whose stored reason is our own wording about the customer's URL or API (it names only the host they gave us). */
const OWN_WORDING = new Set([
  'blocked_address', 'bad_scheme', 'invalid_url', 'too_many_redirects', 'too_large', 'timeout', 'connect_failed', 'dns_failed', 'http_status',
  'unsupported_media_type', 'empty_body', 'payload_too_large', 'batch_api_refused', 'batch_api_unavailable', 'batch_job_failed', 'bad_answer',
]);

export interface PublicItemError {
  stage: string;
  code: string;
  reason: string;
}

/**
 * A URL's failure as the customer sees it: the download's own reason (host and cause, never a
 * resolved address), or the public reason of the photo's failure (failure-reasons.ts).
 */
export function publicItemError(e: ItemError): PublicItemError {
  const stage = e.stage ?? 'download';
  if (OWN_WORDING.has(e.code)) return { stage, code: e.code, reason: e.reason };
  const p = publicFailure({ stage, code: e.code, reason: e.reason });
  return { stage: p.stage, code: e.code, reason: p.reason };
}

export function batchStatusUrl(base: string | undefined, id: string): string {
  return `${base ? base.replace(/\/$/, '') : ''}/v1/batches/${id}`;
}

export function toBatchSummary(b: BatchRow, base: string | undefined) {
  return {
    id: b.id,
    status: b.status,
    statusUrl: batchStatusUrl(base, b.id),
    total: b.total,
    createdAt: b.createdAt.toISOString(),
    finishedAt: b.finishedAt?.toISOString() ?? null,
  };
}

export function toCallView(c: CallRow) {
  return {
    sequence: c.seq,
    size: c.size,
    status: c.status,
    jobId: c.jobId,
    attempts: c.attempts,
    startedAt: c.startedAt.toISOString(),
    acceptedAt: c.acceptedAt?.toISOString() ?? null,
    finishedAt: c.finishedAt?.toISOString() ?? null,
    error: c.error ? publicItemError(c.error) : null,
  };
}

/** GET /v1/batches/:id. The auth header's value is never shown, only its name. */
export function toBatchView(
  b: BatchRow,
  counts: BatchCounts,
  calls: { items: CallRow[]; total: number },
  failures: { items: { line: number; url: string; error: ItemError | null }[]; nextCursor: string | null },
  base: string | undefined,
) {
  return {
    ...toBatchSummary(b, base),
    source: b.source,
    listUrl: b.listUrl,
    output: b.output,
    minBatchSize: b.minBatchSize,
    maxBatchSize: b.maxBatchSize,
    batchApi: { endpoint: b.apiEndpoint, mode: b.apiMode, authHeader: b.apiAuthName },
    counts,
    error: b.error ? publicItemError(b.error) : null,
    calls: { total: calls.total, items: calls.items.map(toCallView) },
    failures: {
      items: failures.items.map((f) => ({ line: f.line, url: f.url, ...(f.error ? publicItemError(f.error) : { stage: 'download', code: 'unexpected', reason: 'failed' }) })),
      nextCursor: failures.nextCursor,
    },
  };
}
