import { STAGES, type Config, type StageName } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { createDb } from '../shared/db.js';
import { createRedis } from '../shared/redis.js';
import { Storage } from '../shared/storage.js';
import { BlobStore } from '../shared/blob-store.js';
import { Broker } from '../queues/broker.js';
import { buildTopology } from '../queues/topology.js';
import { StageConsumer } from '../queues/stage-consumer.js';
import { PhotoRepo } from '../db/photo-repo.js';
import { FrameRepo } from '../db/frame-repo.js';
import { STAGE_HANDLERS } from './stages.js';
import { readTestFaults, withFault } from './test-faults.js';
import { installShutdown, Releasers } from '../shared/lifecycle.js';

/**
 * Composition root of a worker process: builds the clients once, starts one consumer per role,
 * and on SIGTERM/SIGINT stops taking messages, finishes (or hands back) what it holds within
 * SHUTDOWN_GRACE_MS, closes connections in reverse order and exits 0.
 */
export async function runWorkers(config: Config, roles: StageName[], opts: { prefetch?: number } = {}): Promise<void> {
  const log = createLogger(config, { role: roles.length === STAGES.length ? 'worker:all' : `worker:${roles.join(',')}` });
  const faults = readTestFaults(process.env);
  for (const role of roles) {
    if (faults[role]?.exitOnStart) {
      log.error({ stage: role }, 'injected fault: exiting at start-up');
      // What a crashing runtime leaves behind: a plain line on stderr.
      process.stderr.write(`injected fault: ${role} cannot start\n`);
      process.exit(3);
    }
  }

  const releasers = new Releasers(log);
  const db = createDb(config, log, `photopipe-worker-${roles.join(',')}`);
  releasers.add('postgres', () => db.end());
  const redis = createRedis(config, log, `photopipe-worker-${roles.join(',')}`);
  releasers.add('redis', async () => void (await redis.quit().catch(() => redis.disconnect())));
  const storage = new Storage(config);
  releasers.add('s3', async () => storage.close());
  const broker = new Broker(config, buildTopology(config), log, `photopipe-worker-${roles.join(',')}`);
  releasers.add('rabbitmq', () => broker.close());

  const photos = new PhotoRepo(db);
  const deps = { config, photos, frames: new FrameRepo(db), blobs: new BlobStore(redis, config.REDIS_KEY_PREFIX, config.BLOB_TTL_SECONDS), storage, broker };
  const recorder = {
    recordFailure: (msg: { photoId: string }, f: Parameters<PhotoRepo['recordFailure']>[1]) => photos.recordFailure(msg.photoId, f),
    recordRetry: (msg: { photoId: string }) => photos.touchProgress(msg.photoId),
  };

  const consumers = roles.map(
    (stage) =>
      new StageConsumer({
        config,
        broker,
        redis,
        recorder,
        log,
        stage,
        handler: withFault(STAGE_HANDLERS[stage](deps), faults[stage]),
        prefetch: opts.prefetch,
        onAbandonedOverflow: (count) => {
          // Exiting is how the abandoned handlers' memory and CPU come back: a graceful stop hands
          // back what this process holds, and the supervisor (or the orchestrator) starts a fresh one.
          log.fatal({ stage, count }, 'too many handlers ignored their deadline and still run: stopping to be replaced');
          shutdown('abandoned-handlers', 1);
        },
      }),
  );
  releasers.add('consumers', async () => {
    await Promise.all(consumers.map((c) => c.stop(config.SHUTDOWN_GRACE_MS)));
  });

  const shutdown = installShutdown(log, releasers);
  for (const c of consumers) c.start();
  log.info({ roles, queues: roles.map((r) => broker.topology.workQueue(r)) }, 'worker started');
}
