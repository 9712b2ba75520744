import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Redis } from 'ioredis';
import amqplib from 'amqplib';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { loadConfig, type Config, type StageName } from '../../src/shared/config.js';
import { WORKER_ROLES, isStageRole } from '../../src/workers/roles.js';
import { migrate } from '../../src/db/migrate.js';
import { ApiKeyRepo } from '../../src/db/api-key-repo.js';
import { buildTopology } from '../../src/queues/topology.js';
import { createLogger } from '../../src/shared/logger.js';

// See bin/photopipe.js: the SDK's Node 22 notice is noise on this Node 20 machine.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'photopipe.js');
export const LOG_DIR = join(ROOT, '.local', 'test-logs');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
}

/** A process of the system under test, started through the real CLI with the stack's env. */
export class Proc {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }
  get pid(): number {
    return this.child.pid ?? -1;
  }
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.child.kill(signal);
  }
  async stop(timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.running) return this.exited;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t);
    }
  }
}

export interface StackOptions {
  /** Extra environment for every process (e.g. PHOTOPIPE_TEST_FAULTS, STAGE_MAX_ATTEMPTS). */
  env?: Record<string, string>;
  /** Start the API (default true). */
  api?: boolean;
  /** Worker processes to start: 'each' = one process per role, 'one' = all roles in one process, 'none'. */
  workers?: 'each' | 'one' | 'none';
}

/**
 * Drops a test database. pg.Pool.end() resolves before its connections have finished closing; a
 * forced drop at that moment terminates them, and a client that receives the termination with
 * nobody listening throws it as an uncaught exception. So wait (bounded) for the sessions to go.
 */
export async function dropDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  await admin.connect();
  try {
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1`, [name]);
      if (rows[0].n === 0) break;
      await sleep(50);
    }
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/**
 * An isolated photopipe stack on the machine's real services: its own database, AMQP prefix,
 * Redis key prefix and local S3 server (s3rver in a child process, so tests can stop it).
 * Everything is removed again by stop().
 */
export class Stack {
  readonly name = `pp_t_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  env: Record<string, string> = {};
  config!: Config;
  apiUrl = '';
  apiKey = '';
  tenant = '';
  db!: pg.Pool;
  redis!: Redis;
  s3!: S3Client;
  readonly procs: Proc[] = [];
  api: Proc | null = null;
  s3Server: Proc | null = null;
  private s3Dir = '';

  static async start(opts: StackOptions = {}): Promise<Stack> {
    const s = new Stack();
    await s.init(opts);
    return s;
  }

  private async init(opts: StackOptions): Promise<void> {
    mkdirSync(LOG_DIR, { recursive: true });
    this.s3Dir = mkdtempSync(join(tmpdir(), 'photopipe-s3-'));
    const [apiPort, s3Port] = [await freePort(), await freePort()];
    this.env = {
      NODE_ENV: 'test',
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'info',
      PORT: String(apiPort),
      // Every worker and reconciler of a test binds its metrics port anywhere free.
      METRICS_PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${this.name}`,
      REDIS_KEY_PREFIX: `${this.name}:`,
      AMQP_PREFIX: this.name,
      S3_ENDPOINT: `http://127.0.0.1:${s3Port}`,
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_BUCKET: 'photopipe-test',
      LOCAL_S3_PORT: String(s3Port),
      LOCAL_S3_DIR: this.s3Dir,
      RETRY_DELAYS_MS: '200,400,800,1600,3200',
      SHUTDOWN_GRACE_MS: '10000',
      ...opts.env,
    };
    this.config = loadConfig(this.env);
    this.apiUrl = `http://127.0.0.1:${apiPort}`;

    const log = createLogger({ LOG_LEVEL: 'warn' }, { role: 'test' }, 'stderr');
    await migrate(this.config.DATABASE_URL, log);
    this.db = new pg.Pool({ connectionString: this.config.DATABASE_URL, max: 4 });
    this.db.on('error', () => {});
    this.redis = new Redis(this.config.REDIS_URL, { maxRetriesPerRequest: 2, lazyConnect: false });
    this.redis.on('error', () => {});
    this.s3 = new S3Client({
      endpoint: this.env.S3_ENDPOINT,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    await this.startS3();
    this.tenant = `t_${randomBytes(4).toString('hex')}`;
    this.apiKey = (await new ApiKeyRepo(this.db).create(this.tenant)).key;
    if (opts.api !== false) await this.startApi();
    const mode = opts.workers ?? 'one';
    if (mode === 'one') await this.startWorkers([...WORKER_ROLES]);
    if (mode === 'each') for (const s of WORKER_ROLES) await this.startWorkers([s]);
  }

  spawnCli(name: string, args: string[], extraEnv: Record<string, string> = {}): Proc {
    const out = createWriteStream(join(LOG_DIR, `${this.name}-${name}.log`), { flags: 'a' });
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...this.env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    const p = new Proc(name, child);
    this.procs.push(p);
    return p;
  }

  async startS3(): Promise<Proc> {
    this.s3Server = this.spawnCli('s3', ['local-s3']);
    await waitFor('local S3', async () => (await fetch(`${this.env.S3_ENDPOINT}/`).catch(() => null))?.status !== undefined, 30_000);
    return this.s3Server;
  }

  async startApi(extraEnv: Record<string, string> = {}): Promise<Proc> {
    this.api = this.spawnCli('api', ['api'], extraEnv);
    // Ready, not only alive: its Redis, Postgres, RabbitMQ and S3 connections are up, so a first
    // upload is not refused while they connect.
    await waitFor('API /readyz', async () => (await fetch(`${this.apiUrl}/readyz`).catch(() => null))?.ok, 30_000);
    return this.api;
  }

  /**
   * Another API process of this stack on a port of its own (same database, Redis prefix, queues and
   * S3), for tests where a client moves between processes. Resolves once it is ready.
   */
  async startAnotherApi(extraEnv: Record<string, string> = {}): Promise<{ proc: Proc; url: string }> {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = this.spawnCli(`api-${port}`, ['api'], { ...extraEnv, PORT: String(port) });
    await waitFor(`API on ${port} /readyz`, async () => (await fetch(`${url}/readyz`).catch(() => null))?.ok, 30_000);
    return { proc, url };
  }

  /** Starts worker consumers for roles in one process; resolves once each role's queue has a consumer. */
  /** Starts worker roles in one process; resolves once each stage role's queue has a consumer (service roles: each of its queues). */
  async startWorkers(roles: string[], extraEnv: Record<string, string> = {}, args: string[] = []): Promise<Proc> {
    const name = roles.length === WORKER_ROLES.length ? 'all' : roles.join('+');
    const p = this.spawnCli(`worker-${name}`, ['worker', '--role', roles.join(','), ...args], extraEnv);
    await this.waitForConsumers(roles.filter(isStageRole), 1);
    return p;
  }

  async amqp<T>(fn: (ch: amqplib.Channel) => Promise<T>): Promise<T> {
    const conn = await amqplib.connect(this.config.AMQP_URL);
    try {
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      return await fn(ch);
    } finally {
      await conn.close().catch(() => {});
    }
  }

  queue(stage: StageName): string {
    return buildTopology(this.config).workQueue(stage);
  }

  dlq(stage: StageName): string {
    return buildTopology(this.config).dlq(stage);
  }

  async queueStats(queue: string): Promise<{ messageCount: number; consumerCount: number }> {
    return this.amqp((ch) => ch.checkQueue(queue));
  }

  async waitForConsumers(roles: StageName[], atLeast: number, timeoutMs = 30_000): Promise<void> {
    for (const r of roles) {
      await waitFor(`consumer on ${this.queue(r)}`, async () => (await this.queueStats(this.queue(r))).consumerCount >= atLeast, timeoutMs, 200);
    }
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${this.apiKey}`, ...extra };
  }

  async upload(bytes: Buffer, opts: { contentType?: string; filename?: string; key?: string } = {}): Promise<Response> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${opts.key ?? this.apiKey}`,
      'content-type': opts.contentType ?? 'image/jpeg',
    };
    if (opts.filename) headers['x-filename'] = opts.filename;
    return fetch(`${this.apiUrl}/v1/photos`, { method: 'POST', headers, body: bytes });
  }

  /** Uploads and returns the new photo id (asserting 202). */
  async uploadOk(bytes: Buffer, opts: { contentType?: string; filename?: string } = {}): Promise<string> {
    const res = await this.upload(bytes, opts);
    const body = (await res.json()) as { id?: string };
    if (res.status !== 202 || !body.id) throw new Error(`upload answered ${res.status}: ${JSON.stringify(body)}`);
    return body.id;
  }

  async getPhoto(id: string, key = this.apiKey): Promise<{ status: number; body: PhotoView }> {
    const res = await fetch(`${this.apiUrl}/v1/photos/${id}`, { headers: { authorization: `Bearer ${key}` } });
    return { status: res.status, body: (await res.json()) as PhotoView };
  }

  /** Polls Postgres (not the API, which may be down in fault tests) until the photo is final. */
  async waitFinal(id: string, timeoutMs = 60_000): Promise<string> {
    return waitFor(
      `photo ${id} to reach a final state`,
      async () => {
        const { rows } = await this.db.query(`SELECT status FROM photos WHERE id = $1`, [id]);
        const st = rows[0]?.status as string | undefined;
        return st && ['complete', 'duplicate', 'failed'].includes(st) ? st : null;
      },
      timeoutMs,
      150,
    );
  }

  async waitAllFinal(ids: string[], timeoutMs = 120_000): Promise<Map<string, string>> {
    await waitFor(
      `${ids.length} photos to reach a final state`,
      async () => {
        const { rows } = await this.db.query(`SELECT count(*)::int AS n FROM photos WHERE id = ANY($1::uuid[]) AND status IN ('complete','duplicate','failed')`, [ids]);
        return rows[0].n === ids.length;
      },
      timeoutMs,
      250,
    );
    const { rows } = await this.db.query(`SELECT id, status FROM photos WHERE id = ANY($1::uuid[])`, [ids]);
    return new Map(rows.map((r) => [r.id as string, r.status as string]));
  }

  async s3Object(key: string): Promise<{ body: Buffer; contentType: string | undefined; cacheControl: string | undefined }> {
    const out = await this.s3.send(new GetObjectCommand({ Bucket: this.config.S3_BUCKET, Key: key }));
    return { body: Buffer.from(await out.Body!.transformToByteArray()), contentType: out.ContentType, cacheControl: out.CacheControl };
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop()));
    this.s3.destroy();
    // Remove everything this stack created on the shared services.
    const t = buildTopology(this.config);
    await this.amqp(async (ch) => {
      for (const q of t.queues) await ch.deleteQueue(q.name).catch(() => {});
      for (const e of t.exchanges) await ch.deleteExchange(e.name).catch(() => {});
    }).catch(() => {});
    const keys = await this.redis.keys(`${this.config.REDIS_KEY_PREFIX}*`).catch(() => [] as string[]);
    if (keys.length > 0) await this.redis.del(...keys).catch(() => {});
    this.redis.disconnect();
    await this.db.end().catch(() => {});
    await dropDatabase(this.name).catch(() => {});
    rmSync(this.s3Dir, { recursive: true, force: true });
  }
}

export interface PhotoView {
  id: string;
  status: string;
  duplicateOf: string | null;
  sha256: string | null;
  file: { format: string; width: number; height: number; bytes: number; originalName: string | null } | null;
  exif: { make: string | null; model: string | null; takenAt: string | null; orientation: number | null; gps: { lat: number; lon: number; alt: number | null } | null } | null;
  place: unknown;
  variants: Record<'original' | 'framed' | 'thumbnail', { url: string; width: number; height: number; bytes: number; contentType: string }> | null;
  stages: Record<string, string>;
  error: { stage: string; reason: string; code: string | null } | null;
  createdAt: string;
  completedAt: string | null;
  error_?: never;
}
