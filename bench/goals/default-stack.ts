import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Redis } from 'ioredis';
import amqplib from 'amqplib';
import { freePort, sleep } from '../../test/helpers/stack.js';
import { procStat, type ProcStat } from '../lib/proc.js';

/**
 * The default `npm start` stack (`node bin/photopipe.js start`: supervisor, local S3 stand-in, API,
 * one process per worker role, reconciler), run as a child process on an environment of its own:
 * a fresh database, unique AMQP and Redis prefixes, free ports, a temporary S3 folder. Driven only
 * from outside (CLI, HTTP, SQL, /proc), so that the same file measures an older checkout too.
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'bin', 'photopipe.js');
export const GOALS_LOG_DIR = join(ROOT, '.local', 'bench-logs');

export const PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const PG_BASE = 'postgres://postgres@127.0.0.1:5432';
export const REDIS_URL = 'redis://127.0.0.1:6379';
const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
const RABBIT_API = 'http://127.0.0.1:15672/api';
const RABBIT_AUTH = `Basic ${Buffer.from('guest:guest').toString('base64')}`;

/** The stages an upload goes through: the roles compared in the CPU breakdown. */
export const UPLOAD_STAGES = ['ingest', 'exif', 'geocode', 'frame', 'thumbnail', 'upload'] as const;

/**
 * What the bench sets on top of `npm start`'s defaults (documented in bench/README.md). The limits
 * are raised so that the load rows measure the API, not the admission control refusing them.
 */
export const LOAD_OVERRIDES: Record<string, string> = {
  // Per-tenant admission: 0 = no limit (defaults 1,200 uploads a minute, 10,000 in flight).
  TENANT_UPLOADS_PER_MINUTE: '0',
  TENANT_MAX_IN_FLIGHT: '0',
  // Load shedding on Redis memory (default 512 MiB, of the whole shared Redis): the upload rows
  // leave a backlog of thousands of 157 KB photos, and the ceiling server holds GBs for a moment.
  SHED_REDIS_MAX_BYTES: String(16 * 1024 ** 3),
};

/** Environment variables of photopipe (or of the bench's shell) that must not leak into the stack. */
const INHERITED_OUT = /^(S3_|LOCAL_S3_|DATABASE_|REDIS_|AMQP_|SHED_|TENANT_|METRICS_|ADMIN_API_KEY|PHOTOPIPE_|GEOCODER|GEONAMES_|LOG_LEVEL$|NODE_ENV$|PORT$|HOST$|PUBLIC_BASE_URL$|RABBITMQ_|QUEUE_|STAGE_|BULK_|RECONCILE_|SUPERVISOR_|SHUTDOWN_|RETRY_|MAX_ATTEMPTS$|WEBHOOK_|BATCH_|FETCH_|UPLOAD_|FRAME_|AUTH_|HTTP_|TRUST_PROXY$|RESUMABLE_|FAILED_RETENTION|CRASH_)/;


/** Whether the promise settled within ms; the timer never outlives the answer (nor keeps the process alive). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Processes: the supervisor and its descendants, by a ppid walk over /proc, each with its role.

export interface StackProcess {
  pid: number;
  ppid: number;
  /** supervisor, api, local-s3, reconciler, worker:<role>, or "<helper> (under <role>)". */
  role: string;
  /** Clock ticks since boot when the process started (detects a reused pid). */
  startTicks: number;
}

export function processStartTicks(pid: number): number | null {
  return procStat(pid)?.startTicks ?? null;
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * The role of a photopipe process from its command line: `node …/bin/photopipe.js worker --role
 * frame`, or the CLI script a supervisor starts its children from (`dist/cli/photopipe.js` once
 * start transpiles the source, `src/cli/photopipe.ts` through tsx).
 */
function roleOf(pid: number, comm: string): string | null {
  const argv = cmdline(pid);
  const i = argv.findIndex((a) => /(^|\/)photopipe\.[cm]?[jt]s$/.test(a));
  if (i < 0) return null;
  const args = argv.slice(i + 1);
  if (args[0] === 'start') return 'supervisor';
  if (args[0] === 'worker') {
    const r = args.indexOf('--role');
    return `worker:${r >= 0 ? args[r + 1] : args.slice(1).join(' ')}`;
  }
  return args[0] ?? comm;
}

/** The process `root` and all its descendants, now. */
export function processTree(root: number): StackProcess[] {
  const stats: ProcStat[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const s = procStat(Number(e));
    if (s) stats.push(s);
  }
  const children = new Map<number, ProcStat[]>();
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  const self = stats.find((s) => s.pid === root);
  if (!self) return [];
  const out: StackProcess[] = [];
  const visit = (s: ProcStat, parentRole: string | null) => {
    const own = roleOf(s.pid, s.comm);
    // Anything that is not a photopipe command line (tsx's esbuild service, a shell) is a helper of its parent.
    const role = own ?? `${s.comm} (under ${parentRole ?? '?'})`;
    out.push({ pid: s.pid, ppid: s.ppid, role, startTicks: s.startTicks });
    for (const c of children.get(s.pid) ?? []) visit(c, own ?? parentRole);
  };
  visit(self, null);
  return out;
}

// ---------------------------------------------------------------------------------------------

export interface DefaultStackOptions {
  label: string;
  /** Extra environment (METRICS_ENABLED=false for the metrics-off stack). */
  env?: Record<string, string>;
  log: (s: string) => void;
}

/** A `photopipe start` child with everything it owns, and how to remove all of it again. */
export class DefaultStack {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly adminKey = `bench-admin-${randomBytes(12).toString('hex')}`;
  readonly env: Record<string, string>;
  readonly logFile: string;
  apiKey = '';
  tenant = 'bench';
  child: ChildProcess | null = null;
  /** Every process seen in the stack's tree (for the stop: nothing may outlive it). */
  private seen = new Map<number, StackProcess>();
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | null = null;
  private readonly s3Dir: string;
  /** The bench's own connection to the stack's database (its backend is left out of the stack's CPU). */
  db: pg.Client | null = null;
  dbBackendPid = -1;

  private constructor(
    private readonly opts: DefaultStackOptions,
    ports: { api: number; s3: number },
  ) {
    this.name = `bench_goals_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
    this.port = ports.api;
    this.url = `http://127.0.0.1:${ports.api}`;
    this.s3Dir = mkdtempSync(join(tmpdir(), 'photopipe-bench-s3-'));
    mkdirSync(GOALS_LOG_DIR, { recursive: true });
    this.logFile = join(GOALS_LOG_DIR, `${this.name}-${opts.label}.log`);
    const base = Object.fromEntries(Object.entries(process.env).filter(([k, v]) => v !== undefined && !INHERITED_OUT.test(k))) as Record<string, string>;
    this.env = {
      ...base,
      NODE_ENV: 'development',
      HOST: '127.0.0.1',
      PORT: String(ports.api),
      // Every worker and the reconciler: a metrics port of its own, any free one (start keeps 0 as 0).
      METRICS_PORT: '0',
      METRICS_HOST: '127.0.0.1',
      DATABASE_URL: `${PG_BASE}/${this.name}`,
      REDIS_URL,
      REDIS_KEY_PREFIX: `${this.name}:`,
      AMQP_URL,
      AMQP_PREFIX: this.name,
      // No S3_ENDPOINT: start runs its own local S3 stand-in, here on a free port and a temporary folder.
      LOCAL_S3_PORT: String(ports.s3),
      LOCAL_S3_DIR: this.s3Dir,
      ADMIN_API_KEY: this.adminKey,
      ...LOAD_OVERRIDES,
      ...opts.env,
    };
  }

  get label(): string {
    return this.opts.label;
  }

  get supervisorPid(): number {
    return this.child?.pid ?? -1;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Creates the database and starts `photopipe start`; resolves once it is ready (see waitReady). */
  static async start(opts: DefaultStackOptions, timeoutMs = 240_000): Promise<DefaultStack> {
    const s = new DefaultStack(opts, { api: await freePort(), s3: await freePort() });
    const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(s.name)}`);
    } finally {
      await admin.end();
    }
    s.spawn();
    try {
      await s.waitReady(timeoutMs);
    } catch (err) {
      await s.stopAndPurge().catch(() => {});
      throw err;
    }
    return s;
  }

  private spawn(): void {
    const fd = openSync(this.logFile, 'a');
    try {
      this.child = spawn(process.execPath, [BIN, 'start'], { cwd: ROOT, env: this.env, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    const child = this.child;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    this.child.once('error', () => {});
  }

  logTail(lines = 15): string {
    try {
      return readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** The stack's processes now (and remembered for the stop). */
  processes(): StackProcess[] {
    if (!this.child?.pid) return [];
    const tree = processTree(this.child.pid);
    for (const p of tree) this.seen.set(p.pid, p);
    return tree;
  }

  /**
   * Ready: /readyz answers 200, every upload stage's queue has a consumer (checked over AMQP, not
   * the management API, whose figures lag by seconds), an API key exists, and the bench's own
   * database connection is open.
   */
  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const alive = () => {
      if (!this.running) throw new Error(`photopipe start (${this.opts.label}) exited early; log ${this.logFile}:\n${this.logTail()}`);
    };
    for (;;) {
      alive();
      const ok = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`${this.opts.label}: /readyz not 200 after ${timeoutMs} ms; log:\n${this.logTail()}`);
      await sleep(300);
    }
    const conn = await amqplib.connect(AMQP_URL);
    try {
      for (;;) {
        alive();
        const missing: string[] = [];
        for (const stage of UPLOAD_STAGES) {
          const ch = await conn.createChannel();
          ch.on('error', () => {});
          try {
            const q = await ch.checkQueue(`${this.name}.${stage}`);
            if (q.consumerCount < 1) missing.push(stage);
            await ch.close();
          } catch {
            missing.push(stage); // not declared yet: the channel is closed by the broker
          }
        }
        if (missing.length === 0) break;
        if (Date.now() > deadline) throw new Error(`${this.opts.label}: no consumer on ${missing.join(', ')} after ${timeoutMs} ms; log:\n${this.logTail()}`);
        await sleep(300);
      }
    } finally {
      await conn.close().catch(() => {});
    }
    this.apiKey = await this.cli(['keys', 'create', '--tenant', this.tenant]);
    if (!/^\S{16,}$/.test(this.apiKey)) throw new Error(`keys create printed no key: ${JSON.stringify(this.apiKey)}`);
    this.db = new pg.Client({ connectionString: this.env.DATABASE_URL });
    this.db.on('error', () => {});
    await this.db.connect();
    this.dbBackendPid = (await this.db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    this.processes();
  }

  /** Runs a CLI command with the stack's environment; its last stdout line. */
  cli(args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: this.env, timeout: 120_000 }, (err, stdout, stderr) => {
        if (err) return reject(new Error(`photopipe ${args.join(' ')} failed: ${err.message}\n${stderr}`));
        resolve(stdout.trim().split('\n').at(-1)?.trim() ?? '');
      });
    });
  }

  /** Pids of the Postgres backends serving the stack's database (the bench's own one left out). */
  async pgBackends(monitor: pg.Client): Promise<number[]> {
    const { rows } = await monitor.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1`, [this.name]);
    return rows.map((r) => r.pid).filter((p) => p !== this.dbBackendPid);
  }

  /**
   * SIGTERM to the supervisor and wait for it; anything of its tree still alive after that (it
   * should not be) is killed by pid. Then the run's queues, exchanges, Redis keys, database and
   * S3 folder are deleted. Returns what was left over and had to be killed or could not be removed.
   */
  async stopAndPurge(graceMs = 40_000): Promise<{ killed: string[]; problems: string[]; stopSeconds: number }> {
    const t0 = Date.now();
    const killed: string[] = [];
    const problems: string[] = [];
    if (this.running) {
      this.processes();
      this.child!.kill('SIGTERM');
      const done = await settlesWithin(this.exited!, graceMs);
      if (!done) {
        problems.push(`supervisor did not exit within ${graceMs} ms of SIGTERM`);
        this.child!.kill('SIGKILL');
        await this.exited;
      }
    }
    // Children notice a dead supervisor within a second and stop; wait for them, then force.
    const deadline = Date.now() + 20_000;
    let left = this.leftovers();
    while (left.length > 0 && Date.now() < deadline) {
      await sleep(250);
      left = this.leftovers();
    }
    for (const p of left) {
      try {
        process.kill(p.pid, 'SIGKILL');
        killed.push(`${p.role} (${p.pid})`);
      } catch {
        // gone meanwhile
      }
    }
    const stopSeconds = (Date.now() - t0) / 1000;
    await this.db?.end().catch(() => {});
    this.db = null;
    for (const [what, fn] of [
      ['RabbitMQ queues and exchanges', () => this.purgeRabbit()],
      ['Redis keys', () => this.purgeRedis()],
      ['database', () => this.dropDatabase()],
    ] as const) {
      try {
        await fn();
      } catch (err) {
        problems.push(`${what}: ${(err as Error).message}`);
      }
    }
    rmSync(this.s3Dir, { recursive: true, force: true });
    return { killed, problems, stopSeconds };
  }

  /** Processes of the stack's tree that are still alive (same pid and start time). */
  private leftovers(): StackProcess[] {
    return [...this.seen.values()].filter((p) => processStartTicks(p.pid) === p.startTicks);
  }

  private async purgeRabbit(): Promise<void> {
    const list = async (kind: 'queues' | 'exchanges') => {
      const res = await fetch(`${RABBIT_API}/${kind}/%2F?columns=name`, { headers: { authorization: RABBIT_AUTH }, signal: AbortSignal.timeout(15_000) });
      if (!res.ok) throw new Error(`management API ${kind}: ${res.status}`);
      return ((await res.json()) as { name: string }[]).map((x) => x.name).filter((n) => n === this.name || n.startsWith(`${this.name}.`));
    };
    for (const kind of ['queues', 'exchanges'] as const) {
      for (const name of await list(kind)) {
        const res = await fetch(`${RABBIT_API}/${kind}/%2F/${encodeURIComponent(name)}`, { method: 'DELETE', headers: { authorization: RABBIT_AUTH }, signal: AbortSignal.timeout(15_000) });
        if (!res.ok && res.status !== 404) throw new Error(`DELETE ${kind} ${name}: ${res.status}`);
      }
    }
  }

  private async purgeRedis(): Promise<void> {
    await unlinkByPrefix(this.env.REDIS_KEY_PREFIX!);
  }

  private async dropDatabase(): Promise<void> {
    const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
    admin.on('error', () => {});
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(this.name)} WITH (FORCE)`);
    } finally {
      await admin.end();
    }
  }
}

/** Deletes every Redis key under a prefix (SCAN + UNLINK); the number deleted. */
export async function unlinkByPrefix(prefix: string): Promise<number> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 2 });
  redis.on('error', () => {});
  let n = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 2000);
      cursor = next;
      if (keys.length > 0) n += await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return n;
}
