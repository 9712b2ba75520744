import { writeFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { STAGES, ConfigError, loadConfig, longestRetryDelayMs, type Config, type StageName } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { createDb } from '../shared/db.js';
import { createRedis } from '../shared/redis.js';
import { BlobStore } from '../shared/blob-store.js';
import { installShutdown, Releasers } from '../shared/lifecycle.js';
import { migrate } from '../db/migrate.js';
import { ApiKeyRepo } from '../db/api-key-repo.js';
import { PhotoRepo } from '../db/photo-repo.js';
import { Broker } from '../queues/broker.js';
import { buildTopology, toDefinitions } from '../queues/topology.js';
import { DlqService, dlqBrowseLock } from '../queues/dlq-service.js';
import { reconcileOnce, startReconcilerLoop } from '../reconciler/reconciler.js';
import { runApi } from '../api/run-api.js';
import { runWorkers } from '../workers/run-workers.js';
import { STAGE_DESCRIPTIONS } from '../workers/stages.js';
import { startLocalS3 } from '../local-s3/run-local-s3.js';
import { parse, parseRoles, positiveInt, UsageError } from './args.js';
import { startCommand, workersCommand } from './supervise-command.js';

const HELP = `photopipe <command>

  start                               migrations, topology, API + all workers + reconciler (supervised);
                                      a local S3 server too when S3_ENDPOINT is unset  (npm start)
  api                                 the upload/status API only
  worker --role R[,R] [--concurrency N]
                                      worker consumers in this process (one role per container)
  workers [--queues a,b] [--concurrency N] [--processes N]
                                      supervised worker processes for the chosen roles (default: all)
  reconciler                          periodic stuck-work reconciler (one active across the fleet)
  reconcile [--dry-run]               one reconciler pass; prints what it republishes
  migrate                             apply database migrations
  topology [--write FILE]             declare exchanges/queues; --write exports RabbitMQ definitions
  keys create --tenant NAME           prints a new API key (shown once, stored hashed)
  keys list [--tenant NAME] | keys revoke ID
  dlq list [--stage S] [--limit N] | dlq show ID | dlq replay [--stage S | ID...] | dlq purge --stage S --yes
  local-s3                            the local S3-compatible server alone

Configuration comes from environment variables (see .env.example).`;

function workersHelp(config: Config): string {
  const t = buildTopology(config);
  const rows = STAGES.map((s) => `  ${s.padEnd(10)} ${t.workQueue(s).padEnd(24)} ${STAGE_DESCRIPTIONS[s]}`);
  return `photopipe workers [--queues a,b] [--concurrency N] [--processes N]

Starts supervised worker processes (one per role, --processes per role) for the chosen roles.
--queues takes role or queue names; --concurrency is in-flight messages per process (prefetch).

  role       queue                    work
${rows.join('\n')}`;
}

function out(value: unknown): void {
  process.stdout.write(typeof value === 'string' ? `${value}\n` : `${JSON.stringify(value, null, 2)}\n`);
}

async function withTools<T>(
  config: Config,
  fn: (t: { photos: PhotoRepo; keys: ApiKeyRepo; broker: Broker; blobs: BlobStore; redis: Redis; log: ReturnType<typeof createLogger> }) => Promise<T>,
): Promise<T> {
  const log = createLogger(config, { role: 'cli' }, 'stderr');
  const releasers = new Releasers(log);
  try {
    const db = createDb(config, log, 'photopipe-cli');
    releasers.add('postgres', () => db.end());
    const redis = createRedis(config, log, 'photopipe-cli');
    releasers.add('redis', async () => void (await redis.quit().catch(() => redis.disconnect())));
    let broker: Broker | null = null;
    const lazyBroker = () => {
      if (!broker) {
        broker = new Broker(config, buildTopology(config), log, 'photopipe-cli');
        const b = broker;
        releasers.add('rabbitmq', () => b.close());
      }
      return broker;
    };
    return await fn({
      photos: new PhotoRepo(db),
      keys: new ApiKeyRepo(db),
      get broker() {
        return lazyBroker();
      },
      blobs: new BlobStore(redis, config.REDIS_KEY_PREFIX, config.BLOB_TTL_SECONDS),
      redis,
      log,
    });
  } finally {
    await releasers.release();
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') return out(HELP);
  const config = loadConfig();

  switch (command) {
    case 'start':
      return startCommand();
    case 'api':
      return runApi(config);
    case 'worker': {
      const { values } = parse(rest, { role: { type: 'string' }, concurrency: { type: 'string' } });
      if (!values.role) throw new UsageError('worker needs --role (one of ' + STAGES.join(', ') + ')');
      return runWorkers(config, parseRoles(values.role, config.AMQP_PREFIX), { prefetch: positiveInt(values.concurrency, '--concurrency') });
    }
    case 'workers': {
      const { values } = parse(rest, { queues: { type: 'string' }, concurrency: { type: 'string' }, processes: { type: 'string' }, help: { type: 'boolean' } });
      if (values.help) return out(workersHelp(config));
      return workersCommand(parseRoles(values.queues, config.AMQP_PREFIX), {
        concurrency: positiveInt(values.concurrency, '--concurrency'),
        processes: positiveInt(values.processes, '--processes'),
      });
    }
    case 'reconciler': {
      const log = createLogger(config, { role: 'reconciler' });
      const releasers = new Releasers(log);
      const db = createDb(config, log, 'photopipe-reconciler');
      releasers.add('postgres', () => db.end());
      const redis = createRedis(config, log, 'photopipe-reconciler');
      releasers.add('redis', async () => void (await redis.quit().catch(() => redis.disconnect())));
      const broker = new Broker(config, buildTopology(config), log, 'photopipe-reconciler');
      releasers.add('rabbitmq', () => broker.close());
      const loop = startReconcilerLoop(
        { photos: new PhotoRepo(db), broker, blobs: new BlobStore(redis, config.REDIS_KEY_PREFIX, config.BLOB_TTL_SECONDS), log, redis, lockKey: `${config.REDIS_KEY_PREFIX}reconciler:lock` },
        { intervalMs: config.RECONCILE_INTERVAL_MS, staleMs: config.RECONCILE_STALE_MS },
      );
      releasers.add('loop', async () => loop.stop());
      installShutdown(log, releasers);
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
      return;
    }
    case 'reconcile': {
      const { values } = parse(rest, { 'dry-run': { type: 'boolean' }, 'stale-ms': { type: 'string' } });
      const report = await withTools(config, async (t) => {
        await t.broker.waitReady();
        return reconcileOnce(t, { staleMs: positiveInt(values['stale-ms'], '--stale-ms') ?? config.RECONCILE_STALE_MS, dryRun: values['dry-run'] ?? false });
      });
      return out(report);
    }
    case 'migrate': {
      const log = createLogger(config, { role: 'migrate' }, 'stderr');
      const applied = await migrate(config.DATABASE_URL, log);
      return out(applied.length > 0 ? `applied: ${applied.join(', ')}` : 'database is up to date');
    }
    case 'topology': {
      const { values } = parse(rest, { write: { type: 'string' } });
      const topology = buildTopology(config);
      if (values.write) {
        writeFileSync(values.write, `${JSON.stringify(toDefinitions(topology), null, 2)}\n`);
        return out(`wrote ${values.write}`);
      }
      const log = createLogger(config, { role: 'cli' }, 'stderr');
      const broker = new Broker(config, topology, log, 'photopipe-cli');
      try {
        await broker.waitReady();
      } finally {
        await broker.close();
      }
      return out('topology declared');
    }
    case 'keys':
      return keysCommand(config, rest);
    case 'dlq':
      return dlqCommand(config, rest);
    case 'local-s3': {
      const log = createLogger(config, { role: 'local-s3' });
      const s3 = await startLocalS3({ port: config.LOCAL_S3_PORT, directory: config.LOCAL_S3_DIR, bucket: config.S3_BUCKET, log });
      const releasers = new Releasers(log);
      releasers.add('server', () => s3.close());
      installShutdown(log, releasers);
      return;
    }
    default:
      throw new UsageError(`unknown command "${command}"\n\n${HELP}`);
  }
}

async function keysCommand(config: Config, argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, { tenant: { type: 'string' } });
  await withTools(config, async ({ keys }) => {
    if (sub === 'create') {
      const tenant = values.tenant;
      if (!tenant || !/^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$/.test(tenant)) {
        throw new UsageError('keys create needs --tenant NAME (letters, digits, _ and -, at most 63 characters)');
      }
      const { key } = await keys.create(tenant);
      out(key);
    } else if (sub === 'list') {
      out(await keys.list(values.tenant));
    } else if (sub === 'revoke') {
      const id = positionals[0];
      if (!id) throw new UsageError('keys revoke ID');
      out((await keys.revoke(id)) ? 'revoked' : 'no such active key');
    } else {
      throw new UsageError('keys create --tenant NAME | keys list [--tenant NAME] | keys revoke ID');
    }
  });
}

async function dlqCommand(config: Config, argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, { stage: { type: 'string' }, limit: { type: 'string' }, yes: { type: 'boolean' } });
  const stage = values.stage ? (parseRoles(values.stage, config.AMQP_PREFIX)[0] as StageName) : undefined;
  await withTools(config, async ({ photos, broker, redis }) => {
    const dlq = new DlqService(broker, async (photoId, s) => void (await photos.reopenStage(photoId, s)), dlqBrowseLock(config, redis));
    await broker.waitReady();
    if (sub === 'list') {
      out({ counts: await dlq.counts(), items: await dlq.list({ stage, limit: positiveInt(values.limit, '--limit') ?? 50 }) });
    } else if (sub === 'show') {
      const id = positionals[0];
      if (!id) throw new UsageError('dlq show ID');
      const entry = await dlq.show(id);
      if (!entry) throw new UsageError(`no dead letter with id ${id}`);
      out(entry);
    } else if (sub === 'replay') {
      if (!stage && positionals.length === 0) throw new UsageError('dlq replay --stage S | dlq replay ID...');
      out(await dlq.replay({ stage, ids: positionals }));
    } else if (sub === 'purge') {
      if (!stage) throw new UsageError('dlq purge --stage S --yes');
      if (!values.yes) throw new UsageError('dlq purge deletes dead letters for good: add --yes');
      out({ purged: await dlq.purge(stage) });
    } else {
      throw new UsageError('dlq list [--stage S] [--limit N] | dlq show ID | dlq replay [--stage S | ID...] | dlq purge --stage S --yes');
    }
  });
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof UsageError) {
    process.stderr.write(`photopipe: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`photopipe: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
