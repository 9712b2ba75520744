import type { Config } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { installShutdown } from '../shared/lifecycle.js';
import { ProcessResources } from '../shared/process-resources.js';
import { dlqServiceFor } from '../pipeline/replay.js';
import { photoRepos } from '../db/photos/index.js';
import { ApiKeyRepo } from '../db/api-key-repo.js';
import { FrameRepo } from '../db/frame-repo.js';
import { PlaceRepo } from '../db/places/place-repo.js';
import { WebhookRepo } from '../db/webhook-repo.js';
import { WebhookDeliveryRepo } from '../db/webhook-delivery-repo.js';
import { createRedis } from '../shared/redis.js';
import { LoadShedder } from './load-shedder.js';
import { TenantLoad } from '../pipeline/tenant-load.js';
import { QueueStats } from '../observability/queue-stats.js';
import { DashboardData } from '../observability/dashboard-data.js';
import { FleetStatsReader } from '../observability/fleet-stats.js';
import { apiMetrics } from '../observability/api-metrics.js';
import { buildApp } from './app.js';

/** Composition root of the API process. On SIGTERM it stops accepting, finishes in-flight requests, exits 0. */
export async function runApi(config: Config): Promise<void> {
  const log = createLogger(config, { role: 'api' });
  const res = new ProcessResources(config, log, 'photopipe-api');
  const { db, redis, storage, broker } = res;
  // Concurrent uploads share one INSERT within 2 ms (a group commit); each 202 still waits for its own row.
  const photos = photoRepos(db, { intakeBatchWindowMs: 2 });
  const shedder = new LoadShedder(config, redis, broker, log);
  const queues = new QueueStats(broker, { managementUrl: config.RABBITMQ_MANAGEMENT_URL, amqpUrl: config.AMQP_URL, prefix: config.AMQP_PREFIX, log });
  res.releasers.add('load-shedder', async () => shedder.stop());
  // Resumable uploads' shared lock listens for release requests on a connection of its own.
  const subscriber = createRedis(config, log, 'photopipe-api-subscriber');
  res.releasers.add('redis-subscriber', async () => void (await subscriber.quit().catch(() => subscriber.disconnect())));

  const app = await buildApp({
    config,
    log,
    db,
    redis,
    blobs: res.blobs,
    storage,
    broker,
    photos,
    apiKeys: new ApiKeyRepo(db),
    frames: new FrameRepo(db),
    places: new PlaceRepo(db),
    dashboard: new DashboardData({ fleet: new FleetStatsReader(redis, config.REDIS_KEY_PREFIX), queues, failures: photos.failures }),
    metrics: apiMetrics({ blobs: res.blobs, broker, queues }, { enabled: config.METRICS_ENABLED }),
    queueStats: queues,
    shedder,
    tenantLoad: new TenantLoad(config, redis, photos.intake),
    dlq: dlqServiceFor(res, photos.stages),
    webhooks: new WebhookRepo(db),
    deliveries: new WebhookDeliveryRepo(db),
    subscriber,
  });
  res.releasers.add('http', async () => {
    // In-flight uploads get the grace period to finish; after it, whatever still holds a
    // connection is cut so that the process exits before the orchestrator's SIGKILL.
    const timer = setTimeout(() => {
      log.warn({ graceMs: config.SHUTDOWN_GRACE_MS }, 'grace period over: closing the remaining connections');
      app.server.closeAllConnections();
    }, config.SHUTDOWN_GRACE_MS);
    try {
      await app.close();
    } finally {
      clearTimeout(timer);
    }
  });
  installShutdown(log, res.releasers);
  shedder.start();
  await app.listen({ host: config.HOST, port: config.PORT });
}
