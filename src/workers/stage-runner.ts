import { PermanentError } from '../shared/errors.js';
import type { StageHandler, StageContext } from '../queues/stage-consumer.js';
import type { StageMessage } from '../queues/messages.js';
import { decisionsAt, droppableBlobs, nextStages, type PipelineGraph } from '../pipeline/graph.js';
import type { StageName } from '../pipeline/photo-pipeline.js';
import { factsOf } from '../db/photos/photo-row.js';
import type { StageCompletion, StageView } from '../db/photos/stage-state-repo.js';
import type { Logger } from '../shared/logger.js';
import type { BlobKind } from '../shared/blob-store.js';
import type { StageDeps, StageResult, StageRuntime } from './stage-module.js';
import { announceFinal } from './photo-events.js';

/**
 * Wraps a stage's work with what every stage does, written once:
 *  - the opening: load the photo's stage view, check it exists and belongs to the message's tenant,
 *    stop for duplicates, and skip the work when the stage is already finished (a redelivery after
 *    commit) or its condition is false;
 *  - the close: commit the stage with its columns (one statement), record later stages whose
 *    condition is false as skipped, publish what follows, drop blobs nobody reads any more.
 * A redelivered finished stage commits again (idempotent) so that what follows is published:
 * publishing twice is harmless, never publishing would strand the photo.
 */
export function stageRunner(deps: StageDeps, graph: PipelineGraph<StageName>, stage: StageName, runtime: StageRuntime): StageHandler {
  const spec = graph.spec[stage];
  return async (msg, ctx) => {
    const photo = await deps.photos.stages.stageView(msg.photoId);
    if (!photo) throw new PermanentError('unknown_photo', `no photo ${msg.photoId}`);
    if (photo.tenantId !== msg.tenantId) throw new PermanentError('tenant_mismatch', `photo ${msg.photoId} does not belong to tenant ${msg.tenantId}`);
    if (photo.status === 'duplicate') return; // a duplicate gets no further work
    const state = photo.stages[stage];
    // A redelivery after the commit: commit again (idempotent) so that what follows is published,
    // and announce a complete photo again (its event may have been lost with the ack).
    if (state === 'done' || state === 'skipped') return finish(deps, graph, stage, msg, photo, ctx, undefined, state, photo.status === 'complete');
    if (spec.when && !spec.when.test(factsOf(photo))) return finish(deps, graph, stage, msg, photo, ctx, undefined, 'skipped');
    const result = await runtime.run({ msg, photo, ctx });
    if (result?.final === 'duplicate') {
      // No stage will run for it: every blob can go.
      await deps.blobs.delete(msg.photoId, allBlobs(graph));
      await announceFinal(deps.broker, msg, 'duplicate');
      ctx.log.info('duplicate upload');
      return;
    }
    return finish(deps, graph, stage, msg, photo, ctx, result, 'done');
  };
}

async function finish(
  deps: StageDeps,
  graph: PipelineGraph<StageName>,
  stage: StageName,
  msg: StageMessage,
  photo: StageView,
  ctx: StageContext,
  result: StageResult,
  state: 'done' | 'skipped',
  announceAgain = false,
): Promise<void> {
  // A handler whose deadline passed does not commit: its message was already settled without it
  // (retried or dead-lettered), and a late commit could mark a stage done on a photo failed meanwhile.
  ctx.signal.throwIfAborted();
  const facts = { ...factsOf(photo), ...(result?.facts ?? {}) };
  const decided = decisionsAt(graph, stage, photo.stages, facts);
  const committed = await deps.photos.stages.completeStage(msg, stage, { state, pending: decided.pending, skip: decided.skip, columns: result?.columns });
  if (!committed) throw new PermanentError('unknown_photo', `photo ${msg.photoId} disappeared`);
  await afterCommit(deps, graph, msg, committed, [stage, ...decided.skip], ctx.log, announceAgain);
}

/**
 * What follows a commit of finished stages: later stages that concurrent commits made ready are
 * recorded as skipped (condition false) or published, blobs nobody reads any more are dropped, and
 * the photo's completion is logged. Also used after a best-effort stage's terminal failure.
 */
export async function afterCommit(
  deps: Pick<StageDeps, 'photos' | 'broker' | 'blobs'>,
  graph: PipelineGraph<StageName>,
  msg: StageMessage,
  committed: StageCompletion,
  justFinished: StageName[],
  log: Logger,
  announceAgain = false,
): Promise<void> {
  let { row, justCompleted } = committed;
  if (row.status === 'duplicate') {
    // A failed photo that came back (a late success) after its content was processed again under
    // another photo: it is that one's duplicate now, and nothing follows.
    await deps.blobs.delete(msg.photoId, allBlobs(graph));
    await announceFinal(deps.broker, msg, 'duplicate');
    log.info({ duplicateOf: row.duplicateOf }, 'content already owned by another photo');
    return;
  }
  const finished = [...justFinished];
  // Concurrent commits may have made more stages ready than this commit could see before it.
  const next = nextStages(graph, row.stages, factsOf(row), finished);
  if (next.skip.length > 0) {
    const skipped = await deps.photos.stages.markSkipped(msg, next.skip);
    if (skipped) {
      row = skipped.row;
      justCompleted ||= skipped.justCompleted;
    }
    finished.push(...next.skip);
  }
  for (const n of next.publish) await deps.broker.publishToStage(n, msg);
  if (next.publish.length > 0) log.debug({ next: next.publish }, 'published next stages');
  const drop = droppableBlobs(graph, row.stages, finished);
  if (drop.length > 0) await deps.blobs.delete(msg.photoId, drop);
  if (justCompleted) log.info({ totalMs: Date.now() - row.createdAt.getTime() }, 'photo complete');
  if (justCompleted || (announceAgain && row.status === 'complete')) await announceFinal(deps.broker, msg, 'complete');
}

function allBlobs(graph: PipelineGraph<StageName>): BlobKind[] {
  return [...new Set(graph.stages.flatMap((s) => [...graph.spec[s].reads, ...graph.spec[s].writes]))];
}
