import type { StageName } from '../shared/config.js';
import { PermanentError } from '../shared/errors.js';
import type { CompleteStageOptions, PhotoRow, StageCompletion, StageView } from '../db/photo-repo.js';
import type { StageMessage } from '../queues/messages.js';
import type { StageContext } from '../queues/stage-consumer.js';
import type { WorkerDeps } from './worker-deps.js';

/**
 * The pipeline's shape in one place:
 *   ingest -> exif -> (geocode, when the photo has GPS)
 *          -> frame     \
 *          -> thumbnail  > upload (once both renditions exist)
 * A photo is complete when no stage is pending; the blobs are deleted at that moment.
 */
export const FAN_OUT_AFTER_INGEST: StageName[] = ['exif', 'frame', 'thumbnail'];
export const STAGES_AFTER_INGEST: StageName[] = ['exif', 'frame', 'thumbnail', 'upload'];

/**
 * The stages a photo is waiting for, from its recorded stage states (the reconciler's view of
 * the same shape that afterStage walks forward).
 */
export function waitingStages(p: Pick<PhotoRow, 'status' | 'stages'>): StageName[] {
  const s = p.stages;
  if (p.status === 'queued' || s.ingest !== 'done') return ['ingest'];
  const out: StageName[] = [];
  if (s.exif === 'pending') out.push('exif');
  if (s.exif === 'done' && s.geocode === 'pending') out.push('geocode');
  if (s.frame === 'pending') out.push('frame');
  if (s.thumbnail === 'pending') out.push('thumbnail');
  if (s.frame === 'done' && s.thumbnail === 'done' && s.upload === 'pending') out.push('upload');
  return out;
}

/** Loads the photo a message names and decides whether the stage still has work to do. */
export async function loadForStage(
  deps: WorkerDeps,
  stage: StageName,
  msg: StageMessage,
): Promise<{ photo: StageView; alreadyDone: boolean } | null> {
  const photo = await deps.photos.stageView(msg.photoId);
  if (!photo) throw new PermanentError('unknown_photo', `no photo ${msg.photoId}`);
  if (photo.tenantId !== msg.tenantId) throw new PermanentError('tenant_mismatch', `photo ${msg.photoId} does not belong to tenant ${msg.tenantId}`);
  if (photo.status === 'duplicate') return null; // a duplicate gets no further work
  return { photo, alreadyDone: photo.stages[stage] === 'done' };
}

/**
 * Publishes what follows a finished stage and cleans up on completion. Runs again when a stage
 * is redelivered after it already finished (a crash between commit and ack): every downstream
 * stage is idempotent, so publishing twice is harmless, while never publishing would strand the photo.
 */
export async function afterStage(deps: WorkerDeps, stage: StageName, msg: StageMessage, row: PhotoRow, ctx: StageContext): Promise<void> {
  const next: StageName[] = [];
  const s = row.stages;
  if (stage === 'ingest') next.push(...FAN_OUT_AFTER_INGEST.filter((n) => s[n] !== 'done'));
  if (stage === 'exif' && s.geocode === 'pending') next.push('geocode');
  if ((stage === 'frame' || stage === 'thumbnail') && s.frame === 'done' && s.thumbnail === 'done' && s.upload !== 'done') next.push('upload');
  for (const n of next) await deps.broker.publishToStage(n, msg);
  if (next.length > 0) ctx.log.debug({ next }, 'published next stages');
}

/**
 * Commits a stage: marks it done with what it produced (one statement), publishes what follows,
 * and on the photo's completion drops its blobs. A handler whose deadline passed does not commit:
 * its message was already settled without it (retried or dead-lettered), and a late commit could
 * mark a stage done on a photo that was failed in the meantime.
 */
export async function finishStage(
  deps: WorkerDeps,
  stage: StageName,
  msg: StageMessage,
  ctx: StageContext,
  opts: CompleteStageOptions = {},
): Promise<StageCompletion> {
  ctx.signal.throwIfAborted();
  const result = await deps.photos.completeStage(msg.photoId, stage, opts);
  if (!result) throw new PermanentError('unknown_photo', `photo ${msg.photoId} disappeared`);
  await afterStage(deps, stage, msg, result.row, ctx);
  if (result.justCompleted) {
    // Every stage that reads the bytes is done: drop them now rather than at TTL.
    await deps.blobs.delete(msg.photoId, ['raw', 'work', 'framed', 'thumbnail']);
    ctx.log.info({ totalMs: Date.now() - result.row.createdAt.getTime() }, 'photo complete');
  }
  return result;
}
