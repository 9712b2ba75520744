import type { Config, StageName } from '../shared/config.js';
import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';
import { BULK_ONLY_ROLES, isStageRole, WORKER_ROLES } from './roles.js';
import { loadServiceRole } from './service-roles.js';
import type { ServiceRuntime } from './service-role.js';
import { ProcessMetrics, instrumentStages } from '../observability/metrics.js';
import { FleetStatsWriter } from '../observability/fleet-stats.js';
import { startProcessHttp } from '../observability/process-http.js';
import { createLogger } from '../shared/logger.js';
import { installShutdown } from '../shared/lifecycle.js';
import { ProcessResources } from '../shared/process-resources.js';
import { createRedis, redisReady } from '../shared/redis.js';
import { StageControl } from '../pipeline/stage-control.js';
import type { Logger } from '../shared/logger.js';
import { StageConsumer } from '../queues/stage-consumer.js';
import { StageEvents } from '../queues/stage-events.js';
import { photoRepos } from '../db/photos/index.js';
import { FrameRepo } from '../db/frame-repo.js';
import { PIPELINE } from '../pipeline/photo-pipeline.js';
import { readTestFaults, withFault } from './test-faults.js';
import { loadStageModule } from './stage-loader.js';
import { stageRunner } from './stage-runner.js';
import type { StageDeps, StageRuntime } from './stage-module.js';
import { ParkedBlobs } from '../shared/parked-blobs.js';
import { PhotoFailureRecorder } from './failure-recorder.js';

/**
 * Composition root of a worker process: builds the clients once, creates each role's stage
 * (which may load resources of its own), starts one consumer per role, and on SIGTERM/SIGINT
 * stops taking messages, finishes (or hands back) what it holds within SHUTDOWN_GRACE_MS, stops
 * the stages and closes connections in reverse order, and exits 0.
 */
export async function runWorkers(config: Config, roles: string[], opts: { prefetch?: number } = {}): Promise<void> {
  const name = roles.length === WORKER_ROLES.length ? 'worker:all' : `worker:${roles.join(',')}`;
  const stages = roles.filter(isStageRole);
  const services = roles.filter((r) => !isStageRole(r));
  const log = createLogger(config, { role: name });
  const faults = readTestFaults(process.env);
  for (const role of stages) {
    if (faults[role]?.exitOnStart) {
      log.error({ stage: role }, 'injected fault: exiting at start-up');
      // What a crashing runtime leaves behind: a plain line on stderr.
      process.stderr.write(`injected fault: ${role} cannot start\n`);
      process.exit(3);
    }
  }

  // Background work yields the cores to the API (uploads, the dashboard) and batch work yields to live photos.
  const bulkOnly = roles.every((r) => BULK_ONLY_ROLES.includes(r));
  const nice = bulkOnly ? config.BULK_ROLE_NICE : config.WORKER_NICE;
  if (nice > 0) lowerPriority(nice, log, bulkOnly ? 'batch-only roles: CPU priority lowered so that live photos go first' : 'CPU priority lowered so that the API answers first');
  const res = new ProcessResources(config, log, `photopipe-worker-${roles.join(',')}`);
  const shutdown = installShutdown(log, res.releasers);
  const parked = new ParkedBlobs(res.storage);
  const deps: StageDeps = {
    config,
    log,
    db: res.db,
    redis: res.redis,
    // A replayed photo's bytes are read back from where its failure parked them.
    blobs: res.blobs.withCold(parked),
    storage: res.storage,
    broker: res.broker,
    photos: photoRepos(res.db),
    frames: new FrameRepo(res.db),
  };
  const events = new StageEvents();
  let consumers: StageConsumer[] = [];
  await observe(config, log, name, res, events, () => consumers, stages.length);
  const recorder = new PhotoFailureRecorder({ photos: deps.photos, blobs: deps.blobs, parked, broker: res.broker, log });
  res.releasers.add('parking', () => recorder.drain(config.SHUTDOWN_GRACE_MS));

  // Every stage is created (indexes loaded, limiters connected) before any consumes.
  const runtimes = new Map<StageName, StageRuntime>();
  res.releasers.add('stages', async () => {
    for (const [stage, rt] of runtimes) await rt.stop?.().catch((err: Error) => log.warn({ stage, err: err.message }, 'stage stop failed'));
  });
  for (const stage of stages) {
    const started = Date.now();
    runtimes.set(stage, await (await loadStageModule(stage)).create(deps));
    log.debug({ stage, ms: Date.now() - started }, 'stage created');
  }

  consumers = stages.map(
    (stage) =>
      new StageConsumer({
        config,
        broker: res.broker,
        redis: res.redis,
        recorder,
        log,
        stage,
        events,
        bulkShare: config.BULK_LANE_SHARE,
        handler: withFault(stageRunner(deps, PIPELINE, stage, runtimes.get(stage) as StageRuntime), faults[stage]),
        prefetch: opts.prefetch,
        onAbandonedOverflow: (count) => {
          // Exiting is how the abandoned handlers' memory and CPU come back: a graceful stop hands
          // back what this process holds, and the supervisor (or the orchestrator) starts a fresh one.
          log.fatal({ stage, count }, 'too many handlers ignored their deadline and still run: stopping to be replaced');
          shutdown('abandoned-handlers', 1);
        },
      }),
  );
  res.releasers.add('consumers', async () => {
    await Promise.all(consumers.map((c) => c.stop(config.SHUTDOWN_GRACE_MS)));
  });
  // Service roles (webhooks, batches) consume their own queues with the same clients.
  const serviceRuntimes: ServiceRuntime[] = [];
  res.releasers.add('services', async () => {
    await Promise.all(serviceRuntimes.map((s) => s.stop(config.SHUTDOWN_GRACE_MS)));
  });
  for (const role of services) serviceRuntimes.push(await (await loadServiceRole(role)).start(deps));
  // A stage paused fleet-wide stays paused in a process that starts (or restarts) meanwhile.
  const control = new StageControl(res.redis, config.REDIS_KEY_PREFIX);
  const paused = await redisReady(res.redis, 10_000)
    .then(() => control.states())
    .catch((err: Error) => {
      // Redis away at start: consume, and let the watch below pause the stage once it can read the flag.
      log.warn({ err: err.message }, 'cannot read which stages are paused; starting unpaused');
      return null;
    });
  for (const [i, c] of consumers.entries()) c.start({ paused: paused?.[stages[i]!].paused ?? false });
  const stopWatching = await control.watch(createRedis(config, log, `${res.name}-control`), stages, (stage, isPaused) => {
    const c = consumers[stages.indexOf(stage)];
    if (!c) return;
    if (isPaused) void c.pause();
    else c.resume();
  });
  res.releasers.add('stage-control', stopWatching);
  log.info({ roles, queues: stages.map((r) => res.broker.topology.workQueue(r)) }, 'worker started');
}

/**
 * What a worker process shows of itself: Prometheus metrics of its stages (from the consumers'
 * events) and process, its share of the fleet-wide counts in Redis (the dashboard), and the
 * METRICS_PORT with /metrics, /healthz and /readyz (ready: broker connected, consumers
 * subscribed, Redis and Postgres answering). With METRICS_ENABLED=false only the port remains.
 */
async function observe(config: Config, log: Logger, role: string, res: ProcessResources, events: StageEvents, consumers: () => StageConsumer[], expected: number): Promise<void> {
  const metrics = new ProcessMetrics(role, { defaults: config.METRICS_ENABLED });
  if (config.METRICS_ENABLED) {
    instrumentStages(metrics, events);
    const fleet = new FleetStatsWriter(res.redis, config.REDIS_KEY_PREFIX, log);
    fleet.attach(events);
    fleet.start();
    res.releasers.add('fleet-stats', () => fleet.stop());
  }
  const http = await startProcessHttp({
    port: config.METRICS_PORT,
    host: config.METRICS_HOST,
    metrics,
    log,
    probe: {
      notReady: async () => {
        if (!res.broker.isConnected()) return 'RabbitMQ not connected';
        if (consumers().length < expected || consumers().some((c) => !c.consuming)) return 'consumers not subscribed yet';
        await res.redis.ping();
        await res.db.query('SELECT 1');
        return null;
      },
    },
  });
  res.releasers.add('metrics-port', () => http.close());
}

/**
 * Lowers the CPU priority of every thread of this process (Linux niceness is per thread; threads
 * started later, libuv's pool and libvips' workers, inherit it from the thread that starts them).
 */
function lowerPriority(nice: number, log: ReturnType<typeof createLogger>, why: string): void {
  let threads: string[];
  try {
    threads = readdirSync('/proc/self/task');
  } catch {
    threads = [String(process.pid)];
  }
  for (const tid of threads) {
    try {
      setPriority(Number(tid), nice);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'could not lower the CPU priority of this worker');
      return;
    }
  }
  log.info({ nice }, why);
}
