import { randomUUID } from 'node:crypto';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { BlobStore } from '../shared/blob-store.js';
import { PermanentError, PipelineError, UnavailableError } from '../shared/errors.js';
import { isDataRejection } from '../shared/db.js';
import { CONTENT_TYPES, SNIFF_BYTES, sniffImageFormat, type ImageFormat } from '../imaging/sniff.js';
import type { Broker } from '../queues/broker.js';
import type { StageMessage } from '../queues/messages.js';
import type { PhotoIntakeRepo } from '../db/photos/photo-intake-repo.js';
import { isUniqueViolation, type OutputSpec, type PhotoLane, type PhotoProfile } from '../db/photos/photo-row.js';
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
  /**
   * The photo's id, chosen by a caller that may repeat the accept after a crash (a batch item): the
   * same id accepted again is the same photo (its entry message is published again while it is
   * still queued), never a second one. A new id by default.
   */
  id?: string;
  /** What the photo is for (default 'photo', an upload); a batch photo carries its output spec. */
  profile?: PhotoProfile;
  output?: OutputSpec;
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
  const id = req.id ?? randomUUID();
  const message: StageMessage = { v: 1, photoId: id, tenantId: req.tenantId, ...(lane === 'bulk' ? { lane } : {}), ...(req.correlationId ? { cid: req.correlationId } : {}) };
  if (req.id !== undefined) {
    const again = await acceptedBefore(deps, req, message, format, lane);
    if (again) return again;
  }
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
      ...(req.profile === undefined ? {} : { profile: req.profile }),
      ...(req.output === undefined ? {} : { output: req.output }),
    }),
  ]);
  if (recorded.status === 'fulfilled' && !recorded.value) {
    // A concurrent accept of the same chosen id won: its bytes and row stand (never undone here).
    const again = req.id !== undefined ? await acceptedBefore(deps, req, message, format, lane) : null;
    if (again) return again;
    throw new UnavailableError('postgres_unavailable', 'the photo id is taken, try again', 5);
  }
  if (stored.status === 'rejected' || recorded.status === 'rejected') {
    if (stored.status === 'fulfilled') await deps.blobs.delete(id, ['raw']).catch(() => {});
    if (recorded.status === 'fulfilled') await deps.intake.deleteQueued(id).catch(() => {});
    if (recorded.status === 'rejected' && req.sha256 !== undefined && isUniqueViolation(recorded.reason)) throw new ContentOwnedError(req.sha256);
    if (stored.status === 'rejected') {
      deps.log.warn({ err: (stored.reason as Error).message }, 'redis unavailable for a new photo');
      throw new UnavailableError('redis_unavailable', 'storage for uploads is unavailable, try again shortly', 5, { cause: stored.reason });
    }
    const err = (recorded as PromiseRejectedResult).reason as Error;
    if (err instanceof PipelineError) throw err;
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

/**
 * An accept of a chosen id that already has a row: the same photo. While it is still queued its
 * entry message may never have been published (the first accept stopped after the insert), so it
 * is published again (stages are idempotent; a second message only finds the work done). Another
 * tenant's photo under that id is refused.
 */
async function acceptedBefore(deps: AcceptDeps, req: AcceptRequest, message: StageMessage, format: ImageFormat, lane: PhotoLane): Promise<AcceptedPhoto | null> {
  let existing;
  try {
    existing = await deps.intake.statusOf(message.photoId);
  } catch (err) {
    throw new UnavailableError('postgres_unavailable', 'database unavailable, try again shortly', 5, { cause: err });
  }
  if (!existing) return null;
  if (existing.tenantId !== req.tenantId) throw new PermanentError('invalid_data', 'the photo id belongs to another tenant');
  if (existing.status === 'queued') {
    try {
      await deps.broker.publishToStage(PIPELINE.entry, message);
    } catch (err) {
      throw new UnavailableError('amqp_unavailable', 'queue unavailable, try again shortly', 5, { cause: err });
    }
  }
  deps.log.info({ photoId: message.photoId, tenantId: req.tenantId, status: existing.status }, 'photo accepted before: the same photo');
  return { id: message.photoId, status: 'queued', format, bytes: req.bytes.length, lane };
}
