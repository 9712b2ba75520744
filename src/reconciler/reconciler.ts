import type { Redis } from 'ioredis';
import type { StageName } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { Broker } from '../queues/broker.js';
import type { PhotoRepo } from '../db/photo-repo.js';
import { waitingStages } from '../workers/flow.js';
import type { BlobStore } from '../shared/blob-store.js';

export interface ReconcileReport {
  examined: number;
  republished: { photoId: string; stages: StageName[] }[];
  /** Stale photos left alone because their stage's queue still holds a backlog that may contain the message. */
  deferred: { photoId: string; stages: StageName[] }[];
  dryRun: boolean;
}

export interface ReconcilerDeps {
  photos: PhotoRepo;
  broker: Broker;
  blobs: BlobStore;
  log: Logger;
}

/**
 * Finds photos in a non-final state that no stage has moved for longer than staleMs and
 * republishes the message of the stage they wait for. A stage whose queue has ready messages is
 * skipped: a slow but healthy pipeline holds the message there. Stages are idempotent, so a
 * spurious republish costs a little work and nothing else.
 */
export async function reconcileOnce(deps: ReconcilerDeps, opts: { staleMs: number; dryRun: boolean; limit?: number }): Promise<ReconcileReport> {
  const stale = await deps.photos.findStale(opts.staleMs, opts.limit ?? 500);
  const report: ReconcileReport = { examined: stale.length, republished: [], deferred: [], dryRun: opts.dryRun };
  const depth = new Map<StageName, number>();
  const depthOf = async (stage: StageName) => {
    if (!depth.has(stage)) depth.set(stage, await deps.broker.queueDepth(deps.broker.topology.workQueue(stage)));
    return depth.get(stage) ?? 0;
  };
  for (const photo of stale) {
    const waiting = waitingStages(photo);
    const ready: StageName[] = [];
    const backlogged: StageName[] = [];
    for (const stage of waiting) ((await depthOf(stage)) > 0 ? backlogged : ready).push(stage);
    if (backlogged.length > 0) report.deferred.push({ photoId: photo.id, stages: backlogged });
    if (ready.length === 0) continue;
    report.republished.push({ photoId: photo.id, stages: ready });
    if (opts.dryRun) continue;
    const msg = { v: 1 as const, photoId: photo.id, tenantId: photo.tenantId, rawKey: deps.blobs.key(photo.id, 'raw') };
    for (const stage of ready) await deps.broker.publishToStage(stage, msg, { 'x-republished-by': 'reconciler' });
    await deps.photos.touchProgress(photo.id);
  }
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
  deps: ReconcilerDeps & { redis: Redis; lockKey: string },
  opts: { intervalMs: number; staleMs: number },
): { stop: () => Promise<void> } {
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  const owner = `${process.pid}-${Math.random().toString(36).slice(2)}`;
  const pass = async () => {
    try {
      // Held until it expires, not released after the pass: at most one pass per interval across
      // the fleet, whichever instance comes first.
      const got = await deps.redis.set(deps.lockKey, owner, 'PX', Math.max(opts.intervalMs - 100, 1_000), 'NX');
      if (got === 'OK') await reconcileOnce(deps, { staleMs: opts.staleMs, dryRun: false });
      else deps.log.debug({ lockKey: deps.lockKey }, 'another instance holds the reconciler lock: skipping this pass');
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, 'reconciler pass failed; will try again');
    } finally {
      if (!stopped) timer = setTimeout(() => (running = pass()), opts.intervalMs);
    }
  };
  timer = setTimeout(() => (running = pass()), Math.min(opts.intervalMs, 5_000));
  return {
    // Waits for a pass in progress, so shutdown does not close its connections under it.
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
