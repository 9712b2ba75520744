import { acceptPhoto, type AcceptDeps } from '../pipeline/accept-photo.js';
import type { TenantLoad } from '../pipeline/tenant-load.js';
import type { BatchRepo, ItemError } from '../db/batches/batch-repo.js';
import type { Config } from '../shared/config.js';
import { DeferError, PermanentError, PipelineError, RetryableError } from '../shared/errors.js';
import { FetchError, safeFetch } from '../shared/net/index.js';
import { sanitizeFilename } from '../api/filename.js';
import type { DownloadMessage } from '../queues/batch-messages.js';
import type { ServiceContext } from '../queues/service-consumer.js';
import type { FetchSetup } from './fetch-policy.js';

export interface DownloadDeps {
  config: Pick<Config, 'UPLOAD_MAX_BYTES' | 'BATCH_DOWNLOAD_TIMEOUT_MS' | 'BATCH_DOWNLOAD_MAX_REDIRECTS'>;
  repo: BatchRepo;
  accept: AcceptDeps;
  tenantLoad: TenantLoad;
  fetch: FetchSetup;
  /** The customer's dispatcher should look again (an item changed). */
  kick: (tenantId: string) => void;
}

/** How long a download waits when the tenant is at its in-flight limit (it is deferred, not failed). */
const IN_FLIGHT_WAIT_MS = 5_000;

/**
 * One URL of a batch: download it (SSRF-guarded, within the upload limit, redirects capped and
 * checked hop by hop) and hand the bytes to acceptPhoto as a batch photo in the bulk lane, under
 * the photo id the item was given when it was created. So a download repeated after a crash
 * (the broker redelivers it) accepts the same photo, never a second one. Retryable failures
 * (5xx, timeouts, connection errors) throw for a retry with backoff; 404/410, refused addresses
 * and non-images are permanent.
 */
export async function downloadItem(deps: DownloadDeps, msg: DownloadMessage, ctx: ServiceContext): Promise<void> {
  const item = await deps.repo.itemForDownload(msg.batchId, msg.seq);
  if (!item || item.tenantId !== msg.tenantId) return; // nothing of this tenant to do
  if (item.batchStatus !== 'running' || (item.status !== 'pending' && item.status !== 'queued')) return; // cancelled, or done before
  const limits = deps.tenantLoad.limitsOf(item.tenantId);
  if (limits.maxInFlight > 0 && (await deps.tenantLoad.inFlight(item.tenantId)) >= limits.maxInFlight) {
    throw new DeferError(IN_FLIGHT_WAIT_MS, 'the tenant is at its limit of photos in flight');
  }
  let body: Buffer;
  try {
    const res = await safeFetch(item.url, {
      headers: { accept: 'image/*' },
      policy: deps.fetch.policy,
      resolve: deps.fetch.resolve,
      timeoutMs: deps.config.BATCH_DOWNLOAD_TIMEOUT_MS,
      maxRedirects: deps.config.BATCH_DOWNLOAD_MAX_REDIRECTS,
      maxBytes: deps.config.UPLOAD_MAX_BYTES,
      signal: ctx.signal,
    });
    body = res.body;
  } catch (err) {
    if (err instanceof FetchError) throw err; // its class says retryable or not
    throw new RetryableError('download_failed', `download failed: ${(err as Error).message}`, { cause: err });
  }
  await acceptPhoto(deps.accept, {
    tenantId: item.tenantId,
    bytes: body,
    filename: filenameOf(item.url),
    lane: 'bulk',
    id: item.photoId,
    profile: 'batch',
    output: item.output,
  });
  await deps.repo.markDownloaded(msg.batchId, msg.seq);
  deps.kick(item.tenantId);
  ctx.log.debug({ photoId: item.photoId, bytes: body.length }, 'downloaded');
}

/** A download given up (permanent, or out of attempts): the item fails with the reason. */
export async function failDownload(deps: Pick<DownloadDeps, 'repo' | 'kick'>, msg: DownloadMessage, err: Error): Promise<void> {
  await deps.repo.failDownload(msg.batchId, msg.seq, itemErrorOf(err));
  deps.kick(msg.tenantId);
}

export function itemErrorOf(err: Error): ItemError {
  if (err instanceof FetchError) return { stage: 'download', code: err.code, reason: err.message };
  if (err instanceof PermanentError || err instanceof PipelineError) return { stage: 'download', code: err.code, reason: err.message };
  return { stage: 'download', code: 'unexpected', reason: 'the download failed' };
}

function filenameOf(url: string): string | null {
  try {
    const last = new URL(url).pathname.split('/').filter(Boolean).pop();
    return sanitizeFilename(last ? decodeURIComponent(last) : null);
  } catch {
    return null;
  }
}
