import { randomUUID } from 'node:crypto';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { BlobStore } from '../shared/blob-store.js';
import { PermanentError, UnavailableError } from '../shared/errors.js';
import { isDataRejection } from '../shared/db.js';
import { CONTENT_TYPES, SNIFF_BYTES, sniffImageFormat, type ImageFormat } from '../imaging/sniff.js';
import type { Broker } from '../queues/broker.js';
import type { StageMessage } from '../queues/messages.js';
import type { PhotoIntakeRepo } from '../db/photos/photo-intake-repo.js';
import { isUniqueViolation, type PhotoLane } from '../db/photos/photo-row.js';
import { PIPELINE } from './photo-pipeline.js';

export interface AcceptDeps {
  config: Pick<Config, 'UPLOAD_MAX_BYTES'>;
  blobs: BlobStore;
  intake: PhotoIntakeRepo;
  broker: Broker;
  log: Logger;
  /** Admission control (load shedding): why new photos are refused right now, or null. */
  sheddingReason?: () => string | null;
  /** The lane a tenant's new photo takes, and its count of photos in flight (tenant-load.ts); interactive when absent. */
  lanes?: { laneFor(tenantId: string): Promise<PhotoLane>; accepted(tenantId: string): void };
}

export interface AcceptRequest {
  tenantId: string;
  bytes: Buffer;
  /** A display name only (already cleaned by the caller), never a path. */
  filename: string | null;
  /** Bulk callers (batches) say so; otherwise the tenant's load decides. */
  lane?: PhotoLane;
  /** Follows the photo through every log line (the API's request id, echoed as X-Correlation-Id). */
  correlationId?: string;
  /**
   * The bytes' SHA-256 (lower-case hex), when the caller verified it (acceptCheckedPhoto): recorded
   * with the row, so a second photo of the same content is refused by the unique index
   * (ContentOwnedError) instead of becoming a duplicate later.
   */
  sha256?: string;
  /** Where this photo's final event goes instead of the tenant's webhook (checked by the caller). */
  notifyUrl?: string;
}

export interface AcceptedPhoto {
  id: string;
  status: 'queued';
  format: ImageFormat;
  bytes: number;
  lane: PhotoLane;
}

/** Why a photo was refused: the caller's input, so retrying the same input cannot help. */
export type RejectionCode = 'empty_body' | 'unsupported_media_type' | 'payload_too_large' | 'invalid_data' | 'checksum_mismatch';

/**
 * A photo with the same SHA-256 holds this content for the tenant already (the request carried a
 * verified sha256): nothing was stored. Not a failure: acceptCheckedPhoto answers with that photo.
 */
export class ContentOwnedError extends Error {
  override readonly name = 'ContentOwnedError';
  constructor(readonly sha256: string) {
    super(`content ${sha256} is held by another photo of the tenant`);
  }
}

export const SUPPORTED_FORMATS_TEXT = 'JPEG, PNG, WebP, TIFF, GIF, AVIF, HEIC/HEIF';

/**
 * The one way a photo enters the pipeline, whatever brought its bytes (an upload, a folder
 * ingest, a batch download): checks (size, magic bytes), then bytes -> row -> confirmed message.
 * A failure at any step undoes the earlier ones and throws UnavailableError, so success always
 * means "stored, recorded and queued" and a failure leaves nothing behind. Knows nothing of HTTP.
 */
export async function acceptPhoto(deps: AcceptDeps, req: AcceptRequest): Promise<AcceptedPhoto> {
  const shedding = deps.sheddingReason?.();
  if (shedding) throw new UnavailableError('overloaded', `overloaded, try again later (${shedding})`, 10);
  if (req.bytes.length === 0) throw new PermanentError('empty_body' satisfies RejectionCode, 'the upload is empty');
  if (req.bytes.length > deps.config.UPLOAD_MAX_BYTES) {
    throw new PermanentError('payload_too_large' satisfies RejectionCode, `the photo is larger than the upload limit (${deps.config.UPLOAD_MAX_BYTES} bytes)`);
  }
  const format = sniffImageFormat(req.bytes.subarray(0, SNIFF_BYTES));
  if (!format) throw new PermanentError('unsupported_media_type' satisfies RejectionCode, `the bytes are not a supported image (${SUPPORTED_FORMATS_TEXT})`);

  const lane = req.lane ?? (deps.lanes ? await deps.lanes.laneFor(req.tenantId).catch(() => 'interactive' as const) : 'interactive');
  const id = randomUUID();
  const message: StageMessage = { v: 1, photoId: id, tenantId: req.tenantId, ...(lane === 'bulk' ? { lane } : {}), ...(req.correlationId ? { cid: req.correlationId } : {}) };
  // The bytes and the row do not depend on each other: both at once. The message waits for both,
  // and a failure of either undoes the other, so a 202 still means stored, recorded and queued.
  const [stored, recorded] = await Promise.allSettled([
    deps.blobs.put(id, 'raw', req.bytes),
    deps.intake.insertQueued({
      id,
      tenantId: req.tenantId,
      originalName: req.filename,
      contentType: CONTENT_TYPES[format],
      bytes: req.bytes.length,
      format,
      lane,
      ...(req.sha256 === undefined ? {} : { sha256: req.sha256 }),
      ...(req.notifyUrl === undefined ? {} : { notifyUrl: req.notifyUrl }),
    }),
  ]);
  if (stored.status === 'rejected' || recorded.status === 'rejected') {
    if (stored.status === 'fulfilled') await deps.blobs.delete(id, ['raw']).catch(() => {});
    if (recorded.status === 'fulfilled') await deps.intake.deleteQueued(id).catch(() => {});
    if (recorded.status === 'rejected' && req.sha256 !== undefined && isUniqueViolation(recorded.reason)) throw new ContentOwnedError(req.sha256);
    if (stored.status === 'rejected') {
      deps.log.warn({ err: (stored.reason as Error).message }, 'redis unavailable for a new photo');
      throw new UnavailableError('redis_unavailable', 'storage for uploads is unavailable, try again shortly', 5, { cause: stored.reason });
    }
    const err = (recorded as PromiseRejectedResult).reason as Error;
    // A value Postgres refuses is refused again on every try: not a reason to send the client back later.
    if (isDataRejection(err)) throw new PermanentError('invalid_data' satisfies RejectionCode, `the photo's details cannot be stored: ${err.message}`, { cause: err });
    deps.log.warn({ err: err.message }, 'postgres unavailable for a new photo');
    throw new UnavailableError('postgres_unavailable', 'database unavailable, try again shortly', 5, { cause: err });
  }
  try {
    await deps.broker.publishToStage(PIPELINE.entry, message);
  } catch (err) {
    deps.log.warn({ err: (err as Error).message }, 'rabbitmq unavailable for a new photo');
    await deps.intake.deleteQueued(id).catch(() => {});
    await deps.blobs.delete(id, ['raw']).catch(() => {});
    throw new UnavailableError('amqp_unavailable', 'queue unavailable, try again shortly', 5, { cause: err });
  }
  deps.lanes?.accepted(req.tenantId);
  deps.log.info({ photoId: id, tenantId: req.tenantId, cid: req.correlationId, bytes: req.bytes.length, format, lane }, 'photo accepted');
  return { id, status: 'queued', format, bytes: req.bytes.length, lane };
}
