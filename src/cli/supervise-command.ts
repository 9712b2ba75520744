import { createConnection } from 'node:net';
import amqplib from 'amqplib';
import { loadConfig, type Config } from '../shared/config.js';
import { WORKER_ROLES } from '../workers/roles.js';
import { createLogger, prettyFormatter, type Logger } from '../shared/logger.js';
import { migrate } from '../db/migrate.js';
import { buildTopology, declareTopology } from '../queues/topology.js';
import { Supervisor } from '../supervisor/supervisor.js';
import { LOCAL_S3_CREDENTIALS } from '../local-s3/run-local-s3.js';
import { cliChild, workerChild } from './process-specs.js';
import { childEntry } from './child-entry.js';

function supervisorFor(config: Config, log: Logger): Supervisor {
  return new Supervisor({
    log,
    graceMs: config.SHUTDOWN_GRACE_MS,
    initialBackoffMs: config.SUPERVISOR_INITIAL_BACKOFF_MS,
    maxBackoffMs: config.SUPERVISOR_MAX_BACKOFF_MS,
    crashLimit: config.SUPERVISOR_CRASH_LIMIT,
    crashWindowMs: config.SUPERVISOR_CRASH_WINDOW_MS,
    // Children write JSON into a pipe; a person at a terminal reads them pretty.
    format: process.stdout.isTTY ? (prettyFormatter() ?? undefined) : undefined,
    // Nothing left to supervise: exit non-zero so an orchestrator (or the developer) notices,
    // instead of the event loop running dry and the process ending with 0 as if all were well.
    onAllGaveUp: () => {
      log.fatal('every supervised process was given up on: exiting 1');
      process.exit(1);
    },
  });
}

/** The metrics port of the i-th supervised process: METRICS_PORT + i (0 stays 0: any free port). */
function metricsPort(config: Config, i: number): number {
  return config.METRICS_PORT === 0 ? 0 : config.METRICS_PORT + i;
}

/** Ctrl-C / SIGTERM: stop every child within the grace period, then exit 0. */
function stopOnSignal(sup: Supervisor, log: Logger): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping all processes');
    void sup.stop().then(() => {
      log.info('all processes stopped');
      process.exit(0);
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('exit', () => sup.killAll());
}

async function declareOnce(config: Config): Promise<void> {
  const conn = await amqplib.connect(config.AMQP_URL);
  try {
    const ch = await conn.createChannel();
    await declareTopology(ch, buildTopology(config));
    await ch.close();
  } finally {
    await conn.close();
  }
}

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const sock = createConnection({ host: '127.0.0.1', port });
      sock.once('connect', () => {
        sock.destroy();
        resolve();
      });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() > deadline) reject(new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

/**
 * `npm start`: migrations, topology, then the API, one process per worker role and the
 * reconciler, all supervised; plus a local S3 server when S3_ENDPOINT is unset.
 */
export async function startCommand(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config, { role: 'supervisor' });
  await migrate(config.DATABASE_URL, log);
  await declareOnce(config);
  log.info('topology declared');

  const entry = await childEntry(log);
  const sup = supervisorFor(config, log);
  stopOnSignal(sup, log);
  // glibc's per-thread malloc arenas are the usual cause of high RSS with sharp/libvips.
  const env: NodeJS.ProcessEnv = { MALLOC_ARENA_MAX: '2', ...process.env };
  if (!config.S3_ENDPOINT) {
    sup.start(cliChild('local-s3', ['local-s3'], env, entry));
    await waitForPort(config.LOCAL_S3_PORT, 30_000);
    Object.assign(env, {
      S3_ENDPOINT: `http://127.0.0.1:${config.LOCAL_S3_PORT}`,
      S3_ACCESS_KEY_ID: LOCAL_S3_CREDENTIALS.accessKeyId,
      S3_SECRET_ACCESS_KEY: LOCAL_S3_CREDENTIALS.secretAccessKey,
    });
  }
  sup.start(cliChild('api', ['api'], env, entry));
  // One machine, many processes: each gets its own metrics port, METRICS_PORT upwards.
  const metricsPorts: Record<string, number> = {};
  [...WORKER_ROLES, 'reconciler'].forEach((role, i) => (metricsPorts[role] = metricsPort(config, i)));
  for (const role of WORKER_ROLES) sup.start(workerChild(role, { ...env, METRICS_PORT: String(metricsPorts[role]) }, undefined, entry));
  sup.start(cliChild('reconciler', ['reconciler'], { ...env, METRICS_PORT: String(metricsPorts.reconciler) }, entry));
  log.info({ port: config.PORT, metricsPorts }, 'photopipe started: API, workers and reconciler are supervised; Ctrl-C stops everything');
}

/** `photopipe workers --queues a,b [--concurrency N] [--processes N]`: supervised worker processes for chosen roles. */
export async function workersCommand(roles: string[], opts: { concurrency?: number; processes?: number }): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config, { role: 'supervisor' });
  const entry = await childEntry(log);
  const sup = supervisorFor(config, log);
  stopOnSignal(sup, log);
  let n = 0;
  for (const stage of roles) {
    for (let i = 0; i < (opts.processes ?? 1); i++) sup.start(workerChild(stage, { MALLOC_ARENA_MAX: '2', ...process.env, METRICS_PORT: String(metricsPort(config, n++)) }, opts.concurrency, entry));
  }
  log.info({ roles, processesPerRole: opts.processes ?? 1, concurrency: opts.concurrency ?? 'default' }, 'workers started');
}
