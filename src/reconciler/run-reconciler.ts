import { STAGES, longestRetryDelayMs, type Config } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { installShutdown } from '../shared/lifecycle.js';
import { ProcessResources } from '../shared/process-resources.js';
import { photoRepos } from '../db/photos/index.js';
import { ParkedBlobs } from '../shared/parked-blobs.js';
import { startReconcilerLoop, type ReconcileReport } from './reconciler.js';
import { Counter } from 'prom-client';
import { ProcessMetrics } from '../observability/metrics.js';
import { startProcessHttp } from '../observability/process-http.js';
import { BlobSweeper } from './blob-sweeper.js';

/** Composition root of the reconciler process: one pass per interval across the fleet (Redis lock). */
export async function runReconciler(config: Config): Promise<void> {
  const log = createLogger(config, { role: 'reconciler' });
  const res = new ProcessResources(config, log, 'photopipe-reconciler');
  const photos = photoRepos(res.db);
  const sweeper = new BlobSweeper(
    { redis: res.redis, blobs: res.blobs, parked: new ParkedBlobs(res.storage), retention: photos.retention, log },
    { retentionMs: config.FAILED_RETENTION_SECONDS * 1000 },
  );
  const metrics = new ProcessMetrics('reconciler', { defaults: config.METRICS_ENABLED });
  const passes = new Counter({ name: 'photopipe_reconciler_passes_total', help: 'Reconciler passes this process ran (it holds the fleet-wide lock)', registers: [metrics.registry] });
  const republished = new Counter({ name: 'photopipe_reconciler_republished_total', help: 'Photos the reconciler republished (a stage message was lost)', registers: [metrics.registry] });
  const deferred = new Counter({ name: 'photopipe_reconciler_deferred_total', help: 'Stale photos left alone because their stage queue still held a backlog', registers: [metrics.registry] });
  const onPass = (r: ReconcileReport) => {
    passes.inc();
    republished.inc(r.republished.length);
    deferred.inc(r.deferred.length);
  };
  const loop = startReconcilerLoop(
    { stale: photos.stale, stages: photos.stages, broker: res.broker, blobs: res.blobs, log, redis: res.redis, sweeper, onPass, lockKey: `${config.REDIS_KEY_PREFIX}reconciler:lock` },
    { intervalMs: config.RECONCILE_INTERVAL_MS, staleMs: config.RECONCILE_STALE_MS },
  );
  res.releasers.add('loop', async () => loop.stop());
  installShutdown(log, res.releasers);
  const http = await startProcessHttp({
    port: config.METRICS_PORT,
    host: config.METRICS_HOST,
    metrics,
    log,
    probe: { notReady: async () => (res.broker.isConnected() ? ((await res.redis.ping()) && (await res.db.query('SELECT 1')) && null) : 'RabbitMQ not connected') },
  });
  res.releasers.add('metrics-port', () => http.close());
  // A healthy photo goes without progress for at most one handler run (up to its time limit)
  // plus one wait in a delay queue; a threshold below that republishes photos that are fine.
  const quietMs = longestRetryDelayMs(config) + Math.max(...STAGES.map((s) => config.stage(s).timeoutMs));
  if (config.RECONCILE_STALE_MS <= quietMs) {
    log.warn(
      { staleMs: config.RECONCILE_STALE_MS, longestRetryDelayMs: longestRetryDelayMs(config), longestStageTimeoutMs: quietMs - longestRetryDelayMs(config) },
      'RECONCILE_STALE_MS is not above the longest retry delay plus the longest stage time limit: photos that are only waiting or working will be republished (harmless, stages are idempotent, but wasted work)',
    );
  }
  log.info({ intervalMs: config.RECONCILE_INTERVAL_MS, staleMs: config.RECONCILE_STALE_MS }, 'reconciler started');
}
