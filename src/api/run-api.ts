import type { Config } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { createDb } from '../shared/db.js';
import { createRedis } from '../shared/redis.js';
import { Storage } from '../shared/storage.js';
import { BlobStore } from '../shared/blob-store.js';
import { installShutdown, Releasers } from '../shared/lifecycle.js';
import { Broker } from '../queues/broker.js';
import { buildTopology } from '../queues/topology.js';
import { DlqService, dlqBrowseLock } from '../queues/dlq-service.js';
import { PhotoRepo } from '../db/photo-repo.js';
import { ApiKeyRepo } from '../db/api-key-repo.js';
import { FrameRepo } from '../db/frame-repo.js';
import { LoadShedder } from './load-shedder.js';
import { buildApp } from './app.js';

/** Composition root of the API process. On SIGTERM it stops accepting, finishes in-flight requests, exits 0. */
export async function runApi(config: Config): Promise<void> {
  const log = createLogger(config, { role: 'api' });
  const releasers = new Releasers(log);
  const db = createDb(config, log, 'photopipe-api');
  releasers.add('postgres', () => db.end());
  const redis = createRedis(config, log, 'photopipe-api');
  releasers.add('redis', async () => void (await redis.quit().catch(() => redis.disconnect())));
  const storage = new Storage(config);
  releasers.add('s3', async () => storage.close());
  const broker = new Broker(config, buildTopology(config), log, 'photopipe-api');
  releasers.add('rabbitmq', () => broker.close());
  const photos = new PhotoRepo(db);
  const shedder = new LoadShedder(config, redis, broker, log);
  releasers.add('load-shedder', async () => shedder.stop());

  const app = await buildApp({
    config,
    log,
    db,
    redis,
    blobs: new BlobStore(redis, config.REDIS_KEY_PREFIX, config.BLOB_TTL_SECONDS),
    storage,
    broker,
    photos,
    apiKeys: new ApiKeyRepo(db),
    frames: new FrameRepo(db),
    shedder,
    dlq: new DlqService(broker, async (photoId, stage) => void (await photos.reopenStage(photoId, stage)), dlqBrowseLock(config, redis)),
  });
  releasers.add('http', async () => {
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
  installShutdown(log, releasers);
  shedder.start();
  await app.listen({ host: config.HOST, port: config.PORT });
}
