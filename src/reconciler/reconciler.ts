import type { Redis } from 'ioredis';
import type { StageName } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { Broker } from '../queues/broker.js';
import type { StalePhotoRepo } from '../db/photos/stale-photo-repo.js';
import type { StageStateRepo } from '../db/photos/stage-state-repo.js';
import type { KeysetPosition } from '../db/photos/photo-row.js';
import { waitingStages } from '../pipeline/graph.js';
import { PIPELINE } from '../pipeline/photo-pipeline.js';
import type { BlobStore } from '../shared/blob-store.js';
import type { BlobSweeper } from './blob-sweeper.js';

export interface ReconcileReport {
  examined: number;
  republished: { photoId: string; stages: StageName[] }[];
  /** Stale photos left alone because their stage's queue still holds a backlog that may contain the message. */
  deferred: { photoId: string; stages: StageName[] }[];
  dryRun: boolean;
}

export interface ReconcilerDeps {
  stale: StalePhotoRepo;
  stages: Pick<StageStateRepo, 'touchProgress'>;
  broker: Broker;
  blobs: BlobStore;
  log: Logger;
}

/**
 * A backlog shields a stale photo (its message may be waiting in it) for this many thresholds at
 * most: a healthy queue drains its backlog within that, so past it the message is taken as lost
 * even on a queue that is never empty.
 */
export const BACKLOG_SHIELD_THRESHOLDS = 4;

/** Photos examined per pass at most, a page at a time; the rest waits for the next pass. */
const MAX_PER_PASS = 20_000;

/**
 * Finds photos in a non-final state that no stage has moved for longer than staleMs and
 * republishes the message of the stage they wait for. A stage whose queue has ready messages is
 * skipped (a slow but healthy pipeline holds the message there) until the photo has been stale
 * for BACKLOG_SHIELD_THRESHOLDS x staleMs. Stages are idempotent, so a spurious republish costs a
 * little work and nothing else. Every stale photo is examined, page by page, so photos deferred
 * behind one stage's backlog never crowd out photos stuck on another.
 */
export async function reconcileOnce(deps: ReconcilerDeps, opts: { staleMs: number; dryRun: boolean; pageSize?: number; signal?: AbortSignal }): Promise<ReconcileReport> {
  const report: ReconcileReport = { examined: 0, republished: [], deferred: [], dryRun: opts.dryRun };
  const depth = new Map<StageName, number>();
  const depthOf = async (stage: StageName) => {
    if (!depth.has(stage)) depth.set(stage, await deps.broker.stageDepth(stage));
    return depth.get(stage) ?? 0;
  };
  const shieldUntil = Date.now() - BACKLOG_SHIELD_THRESHOLDS * opts.staleMs;
  const pageSize = opts.pageSize ?? 500;
  let after: KeysetPosition | undefined;
  do {
    const page = await deps.stale.findStale(opts.staleMs, pageSize, after);
    after = page.next ?? undefined;
    for (const photo of page.items) {
      // A pass over a large backlog can take a while: shutdown ends it between photos (the next pass resumes).
      if (opts.signal?.aborted) break;
      report.examined++;
      const waiting = waitingStages(PIPELINE, photo.status, photo.stages);
      const ready: StageName[] = [];
      const backlogged: StageName[] = [];
      const shielded = photo.progressedAt.getTime() > shieldUntil;
      for (const stage of waiting) (shielded && (await depthOf(stage)) > 0 ? backlogged : ready).push(stage);
      if (backlogged.length > 0) report.deferred.push({ photoId: photo.id, stages: backlogged });
      if (ready.length === 0) continue;
      report.republished.push({ photoId: photo.id, stages: ready });
      if (opts.dryRun) continue;
      const msg = { v: 1 as const, photoId: photo.id, tenantId: photo.tenantId, ...(photo.lane === 'bulk' ? { lane: photo.lane } : {}) };
      for (const stage of ready) await deps.broker.publishToStage(stage, msg, { 'x-republished-by': 'reconciler' });
      await deps.stages.touchProgress(photo.id);
    }
  } while (after && report.examined < MAX_PER_PASS && !opts.signal?.aborted);
  if (report.republished.length > 0 || report.deferred.length > 0) {
    deps.log.info({ examined: report.examined, republished: report.republished.length, deferred: report.deferred.length, dryRun: opts.dryRun }, 'reconciler pass');
  }
  return report;
}

/**
 * The periodic reconciler. Any number of processes may run it; a Redis lock (SET NX PX) lets
 * one of them do each pass across the fleet.
 */
export function startReconcilerLoop(
  deps: ReconcilerDeps & { redis: Redis; lockKey: string; sweeper?: BlobSweeper; onPass?: (report: ReconcileReport) => void },
  opts: { intervalMs: number; staleMs: number },
): { stop: () => Promise<void> } {
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> = Promise.resolve();
  const stopping = new AbortController();
  const owner = `${process.pid}-${Math.random().toString(36).slice(2)}`;
  const pass = async () => {
    try {
      // Held until it expires, not released after the pass: at most one pass per interval across
      // the fleet, whichever instance comes first.
      const got = await deps.redis.set(deps.lockKey, owner, 'PX', Math.max(opts.intervalMs - 100, 1_000), 'NX');
      if (got === 'OK') {
        deps.onPass?.(await reconcileOnce(deps, { staleMs: opts.staleMs, dryRun: false, signal: stopping.signal }));
        await deps.sweeper?.sweep(stopping.signal);
      } else deps.log.debug({ lockKey: deps.lockKey }, 'another instance holds the reconciler lock: skipping this pass');
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, 'reconciler pass failed; will try again');
    } finally {
      if (!stopping.signal.aborted) timer = setTimeout(() => (running = pass()), opts.intervalMs);
    }
  };
  timer = setTimeout(() => (running = pass()), Math.min(opts.intervalMs, 5_000));
  return {
    // Ends a pass in progress at the next photo and waits for it, so shutdown does not close its
    // connections under it.
    stop: async () => {
      if (timer) clearTimeout(timer);
      stopping.abort();
      await running;
    },
  };
}
