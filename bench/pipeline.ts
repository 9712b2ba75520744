import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { STAGES, type StageName } from '../src/shared/config.js';
import { LOG_DIR, sleep, type Proc, type Stack } from '../test/helpers/stack.js';
import { distinctSeries, type Corpus } from './lib/corpus.js';
import { BENCH_CPU, CpuMeter, pidsByComm, Sampler, type Target } from './lib/proc.js';
import { mean, percentile } from './lib/stats.js';

/**
 * (2), (5), (6): the real system end to end. Photos are uploaded through the API with bounded
 * concurrency; a run lasts from the first upload to the last photo reaching a final state, read
 * from Postgres (max completed_at), so polling granularity does not enter the figure.
 */

/** Roles whose work is CPU-bound (image decode/encode, hashing, EXIF parsing): the ones scaled in (5). */
export const CPU_BOUND_ROLES: StageName[] = ['ingest', 'exif', 'frame', 'thumbnail'];

export interface StageStats {
  count: number;
  p50Ms: number;
  p95Ms: number;
  meanMs: number;
  /** Sum of handler time / run wall time: how many of this stage's messages were in a handler on average. */
  busy: number;
}

export interface StuckReport {
  count: number;
  afterMs: number;
  photos: { id: string; status: string; gps: boolean; stages: Record<string, string> }[];
  queues: Record<string, { ready: number; consumers: number; dlq: number }>;
}

export interface BatchResult {
  label: string;
  /** Photos that never reached a final state (a bug, reported; the figures count the others). */
  stuck: StuckReport | null;
  /** Set when a shared service restarted during the run (other people's fault tests do that here). */
  disturbed: string | null;
  n: number;
  processesPerRole: Record<string, number>;
  uploadSeconds: number;
  seconds: number;
  photosPerSec: number;
  statuses: Record<string, number>;
  peakRssBytes: Record<string, number>;
  redis: { baselineBytes: number; peakBytes: number; peakDeltaBytes: number } | null;
  leftoverBlobKeys: number;
  cpuMsPerPhoto: Record<string, number>;
  /** Sum over the system's processes (not the bench's own load generator). */
  cpuMsPerPhotoSystem: number;
  stages: Partial<Record<StageName, StageStats>>;
}

export interface SteadyResult {
  stuck: StuckReport | null;
  disturbed: string | null;
  offeredPerSec: number;
  durationSec: number;
  n: number;
  achievedPerSec: number;
  statuses: Record<string, number>;
  latencyMs: { p50: number; p95: number; p99: number; max: number; mean: number };
  /** Mean time per photo in each step of its path: waiting in a queue, then in the handler. */
  breakdownMs: Record<string, { waitMs: number; serviceMs: number }>;
  uploadAcceptMs: { p50: number; p99: number };
}

interface StageLine {
  stage: StageName;
  photoId: string;
  endMs: number;
  durationMs: number;
}

export class PipelineBench {
  readonly workers = new Map<StageName, Proc[]>();
  private pgPids = new Set<number>();
  private readonly servicePids: Record<string, number[]>;

  constructor(
    readonly stack: Stack,
    private readonly corpus: Corpus,
    private readonly workerEnv: Record<string, string>,
    private readonly log: (s: string) => void,
  ) {
    this.servicePids = {
      'redis-server (shared)': pidsByComm(['redis-server']).map((p) => p.pid),
      'rabbitmq (shared)': pidsByComm(['beam.smp']).map((p) => p.pid),
    };
  }

  /** One worker process per role, as `photopipe worker --role R` (what a container per role runs). */
  async startWorkers(): Promise<void> {
    // Started together: each start compiles the TypeScript (tsx), which is slow on a busy machine.
    for (const role of STAGES) this.workers.set(role, [this.stack.spawnCli(`worker-${role}`, ['worker', '--role', role], this.workerEnv)]);
    await this.stack.waitForConsumers([...STAGES], 1, 120_000);
  }

  /** Stops every worker process (for the API-only measurement). */
  async stopWorkers(): Promise<void> {
    await Promise.all([...this.workers.values()].flat().map((p) => p.stop()));
    this.workers.clear();
  }

  /** Adds a second process to each given role, and waits until the broker sees both consumers. */
  async scaleTo(roles: StageName[], processes: 1 | 2): Promise<void> {
    if (processes === 2) {
      await Promise.all(
        roles.map(async (role) => {
          const list = this.workers.get(role) ?? [];
          if (list.length >= 2) return;
          const p = this.stack.spawnCli(`worker-${role}`, ['worker', '--role', role], this.workerEnv);
          this.workers.set(role, [...list, p]);
          await this.stack.waitForConsumers([role], 2, 60_000);
        }),
      );
    } else {
      await Promise.all(
        roles.map(async (role) => {
          const list = this.workers.get(role) ?? [];
          const extra = list.slice(1);
          this.workers.set(role, list.slice(0, 1));
          await Promise.all(extra.map((p) => p.stop()));
        }),
      );
    }
  }

  processesPerRole(): Record<string, number> {
    return Object.fromEntries(STAGES.map((s) => [s, this.workers.get(s)?.length ?? 0]));
  }

  private targets(): Target[] {
    const t: Target[] = [];
    if (this.stack.api) t.push({ name: 'api', pid: this.stack.api.pid });
    if (this.stack.s3Server) t.push({ name: 'local S3 (s3rver)', pid: this.stack.s3Server.pid });
    for (const [role, procs] of this.workers) for (const p of procs) t.push({ name: `worker:${role}`, pid: p.pid });
    return t;
  }

  private async refreshPgPids(): Promise<void> {
    const { rows } = await this.stack.db.query(`SELECT pid FROM pg_stat_activity WHERE datname = $1`, [this.stack.name]);
    for (const r of rows) this.pgPids.add(r.pid as number);
  }

  private cpuGroups(): Record<string, number[]> {
    const g: Record<string, number[]> = {};
    for (const t of this.targets()) g[t.name] = [...(g[t.name] ?? []), t.pid];
    g['postgres (this database)'] = [...this.pgPids];
    return { ...g, ...this.servicePids };
  }

  /** Upload answers other than 202 seen in the current run (503 while a shared service restarts). */
  private refusals: string[] = [];

  /** One upload; a 503 or a dropped connection (a dependency restarting) is retried a few times. */
  private async upload(bytes: Buffer): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await this.stack.upload(bytes);
        const body = (await res.json()) as { id?: string; error?: { message?: string } };
        if (res.status === 202 && body.id) return body.id;
        throw new Error(`upload answered ${res.status}: ${body.error?.message ?? JSON.stringify(body)}`);
      } catch (err) {
        this.refusals.push((err as Error).message);
        if (attempt >= 6) throw err;
        await sleep(250 * 2 ** attempt);
      }
    }
  }

  private async uploadAll(photos: Buffer[], concurrency: number): Promise<{ ids: string[]; sentAt: number[] }> {
    const ids: string[] = new Array(photos.length);
    const sentAt: number[] = new Array(photos.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < photos.length) {
          const i = next++;
          sentAt[i] = Date.now();
          ids[i] = await this.upload(photos[i]!);
        }
      }),
    );
    return { ids, sentAt };
  }

  /**
   * Waits until every photo is final. A photo that makes no progress is not waited for forever:
   * when no photo of the run became final for stallMs, the rest are reported as stuck.
   */
  private async waitFinal(ids: string[], stallMs: number): Promise<StuckReport | null> {
    let last = -1;
    let lastProgress = Date.now();
    for (;;) {
      const { rows } = await this.stack.db.query(
        `SELECT count(*)::int AS n FROM photos WHERE id = ANY($1::uuid[]) AND status IN ('complete','duplicate','failed')`,
        [ids],
      );
      const n = rows[0].n as number;
      if (n === ids.length) return null;
      if (n !== last) {
        last = n;
        lastProgress = Date.now();
      } else if (Date.now() - lastProgress > stallMs) {
        return this.stuckReport(ids, stallMs);
      }
      await sleep(200);
    }
  }

  private async stuckReport(ids: string[], stallMs: number): Promise<StuckReport> {
    const { rows } = await this.stack.db.query(
      `SELECT id, status, stages, (gps_lat IS NOT NULL) AS gps FROM photos WHERE id = ANY($1::uuid[]) AND status NOT IN ('complete','duplicate','failed')`,
      [ids],
    );
    const queues: Record<string, { ready: number; consumers: number; dlq: number }> = {};
    for (const s of STAGES) {
      const q = await this.stack.queueStats(this.stack.queue(s)).catch(() => ({ messageCount: -1, consumerCount: -1 }));
      const d = await this.stack.queueStats(this.stack.dlq(s)).catch(() => ({ messageCount: -1, consumerCount: -1 }));
      queues[s] = { ready: q.messageCount, consumers: q.consumerCount, dlq: d.messageCount };
    }
    const report: StuckReport = {
      count: rows.length,
      afterMs: stallMs,
      photos: rows.slice(0, 20).map((r) => ({ id: r.id as string, status: r.status as string, gps: r.gps as boolean, stages: r.stages as Record<string, string> })),
      queues,
    };
    this.log(`  WARNING: ${report.count} photo(s) made no progress for ${stallMs / 1000} s: ${JSON.stringify(report.photos.slice(0, 3))}; queues ${JSON.stringify(queues)}`);
    return report;
  }

  private async statuses(ids: string[]): Promise<Record<string, number>> {
    const { rows } = await this.stack.db.query(`SELECT status, count(*)::int AS n FROM photos WHERE id = ANY($1::uuid[]) GROUP BY status`, [ids]);
    return Object.fromEntries(rows.map((r) => [r.status as string, r.n as number]));
  }

  /** Identifies the running Redis and Postgres server instances: a change means one restarted. */
  async serviceEpoch(): Promise<{ redis: string; postgres: string }> {
    const redis = await this.stack.redis
      .info('server')
      .then((i) => /run_id:(\w+)/.exec(i)?.[1] ?? '?')
      .catch(() => 'unreachable');
    const postgres = await this.stack.db
      .query(`SELECT pg_postmaster_start_time()::text AS t`)
      .then((r) => r.rows[0].t as string)
      .catch(() => 'unreachable');
    return { redis, postgres };
  }

  private disturbance(before: { redis: string; postgres: string }, after: { redis: string; postgres: string }): string | null {
    const what: string[] = [];
    if (this.refusals.length > 0) what.push(`${this.refusals.length} upload(s) refused, e.g. "${this.refusals[0]}"`);
    if (before.redis !== after.redis) what.push('Redis restarted or was unreachable');
    if (before.postgres !== after.postgres) what.push('Postgres restarted or was unreachable');
    return what.length > 0 ? what.join('; ') : null;
  }

  /** Blobs of these photos still in Redis (each is deleted when its photo completes). */
  private async leftoverBlobs(ids: string[]): Promise<number> {
    const p = this.stack.config.REDIS_KEY_PREFIX;
    const keys = ids.flatMap((id) => ['raw', 'work', 'framed', 'thumbnail'].map((k) => `${p}blob:${id}:${k}`));
    let n = 0;
    try {
      for (let i = 0; i < keys.length; i += 1000) n += await this.stack.redis.exists(...keys.slice(i, i + 1000));
    } catch {
      return -1; // Redis unreachable
    }
    return n;
  }

  /** "stage done" lines of the worker logs (JSON, one per handled message) for the given photos. */
  private stageLines(ids: Set<string>): StageLine[] {
    const out: StageLine[] = [];
    for (const role of STAGES) {
      const file = join(LOG_DIR, `${this.stack.name}-worker-${role}.log`);
      if (!existsSync(file)) continue;
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        if (!line.includes('"stage done"')) continue;
        try {
          const j = JSON.parse(line) as { stage?: StageName; photoId?: string; time?: string; durationMs?: number };
          if (!j.stage || !j.photoId || !ids.has(j.photoId) || typeof j.durationMs !== 'number' || !j.time) continue;
          out.push({ stage: j.stage, photoId: j.photoId, endMs: Date.parse(j.time), durationMs: j.durationMs });
        } catch {
          // a line cut by a concurrent append: skip
        }
      }
    }
    return out;
  }

  /** N photos through the whole system as fast as it takes them. */
  async runBatch(label: string, n: number, o: { uploadConcurrency: number; stallMs: number }, corpus: Corpus = this.corpus): Promise<BatchResult> {
    const photos = distinctSeries(corpus, n, `${this.stack.name}-${label}-${Date.now()}`);
    const sampler = new Sampler(this.targets(), this.stack.redis, 200);
    const cpu = new CpuMeter(() => this.cpuGroups());
    const epoch = await this.serviceEpoch();
    this.refusals = [];
    await this.refreshPgPids();
    await sampler.start();
    cpu.snapshot();
    const t0 = Date.now();
    const { ids } = await this.uploadAll(photos, o.uploadConcurrency);
    const uploadSeconds = (Date.now() - t0) / 1000;
    const stuck = await this.waitFinal(ids, o.stallMs);
    const disturbed = this.disturbance(epoch, await this.serviceEpoch());
    await this.refreshPgPids().catch(() => {});
    const cpuMs = cpu.diff();
    const sample = await sampler.stop();
    const { rows } = await this.stack.db.query(
      `SELECT (extract(epoch FROM max(COALESCE(completed_at, updated_at))) * 1000)::float8 AS t, count(*)::int AS n
       FROM photos WHERE id = ANY($1::uuid[]) AND status IN ('complete','duplicate','failed')`,
      [ids],
    );
    const seconds = ((rows[0].t as number) - t0) / 1000;
    const finished = rows[0].n as number;
    const statuses = await this.statuses(ids);
    await sleep(300);
    const leftoverBlobKeys = await this.leftoverBlobs(ids);

    const lines = this.stageLines(new Set(ids));
    const stages: Partial<Record<StageName, StageStats>> = {};
    for (const s of STAGES) {
      const d = lines.filter((l) => l.stage === s).map((l) => l.durationMs);
      if (d.length === 0) continue;
      stages[s] = { count: d.length, p50Ms: percentile(d, 50), p95Ms: percentile(d, 95), meanMs: mean(d), busy: d.reduce((a, b) => a + b, 0) / (seconds * 1000) };
    }
    const cpuMsPerPhoto = Object.fromEntries(Object.entries(cpuMs).map(([k, v]) => [k, v / n]));
    return {
      label,
      stuck,
      disturbed,
      n,
      processesPerRole: this.processesPerRole(),
      uploadSeconds,
      seconds,
      photosPerSec: finished / seconds,
      statuses,
      peakRssBytes: sample.peakRss,
      redis: sample.redis,
      leftoverBlobKeys,
      cpuMsPerPhoto,
      cpuMsPerPhotoSystem: Object.entries(cpuMsPerPhoto)
        .filter(([k]) => k !== BENCH_CPU)
        .reduce((a, [, v]) => a + v, 0),
      stages,
    };
  }

  /** Uploads at a fixed offered rate (open loop: one every 1/rate s, whatever the answers) and measures upload -> complete. */
  async runSteady(ratePerSec: number, durationSec: number, o: { stallMs: number }): Promise<SteadyResult> {
    const n = Math.max(5, Math.round(ratePerSec * durationSec));
    const photos = distinctSeries(this.corpus, n, `${this.stack.name}-steady-${Date.now()}`);
    const ids: string[] = new Array(n);
    const sentAt: number[] = new Array(n);
    const acceptMs: number[] = new Array(n);
    const epoch = await this.serviceEpoch();
    this.refusals = [];
    const t0 = Date.now();
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const due = t0 + (i * 1000) / ratePerSec;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      const send = (async () => {
        sentAt[i] = Date.now();
        ids[i] = await this.upload(photos[i]!);
        acceptMs[i] = Date.now() - sentAt[i]!;
      })();
      send.catch(() => {}); // awaited below; this only keeps an early failure from being "unhandled"
      sends.push(send);
    }
    await Promise.all(sends);
    const stuck = await this.waitFinal(ids, o.stallMs);
    const disturbed = this.disturbance(epoch, await this.serviceEpoch());
    const { rows } = await this.stack.db.query(
      `SELECT id, status, (extract(epoch FROM created_at) * 1000)::float8 AS created, (extract(epoch FROM completed_at) * 1000)::float8 AS completed
       FROM photos WHERE id = ANY($1::uuid[])`,
      [ids],
    );
    const byId = new Map(rows.map((r) => [r.id as string, r as { status: string; created: number; completed: number | null }]));
    const latencies: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = byId.get(ids[i]!);
      if (r?.status === 'complete' && r.completed !== null) latencies.push(r.completed - sentAt[i]!);
    }
    const lastComplete = Math.max(...rows.map((r) => (r.completed as number | null) ?? 0));

    // Where a photo's time goes: for each stage, wait = handler start - the moment it became
    // ready (its predecessor finished), service = handler duration. Means over the photos.
    const lines = this.stageLines(new Set(ids));
    const per = new Map<string, Partial<Record<StageName, StageLine>>>();
    for (const l of lines) {
      const m = per.get(l.photoId) ?? {};
      m[l.stage] = l;
      per.set(l.photoId, m);
    }
    const acc: Record<string, { wait: number[]; service: number[] }> = {};
    const add = (k: string, wait: number, service: number) => {
      acc[k] ??= { wait: [], service: [] };
      acc[k].wait.push(wait);
      acc[k].service.push(service);
    };
    for (let i = 0; i < n; i++) {
      const id = ids[i]!;
      const r = byId.get(id);
      const m = per.get(id);
      if (!r || !m || r.status !== 'complete') continue;
      add('api (send -> row inserted)', 0, r.created - sentAt[i]!);
      const start = (l: StageLine) => l.endMs - l.durationMs;
      const ready: Partial<Record<StageName, number>> = { ingest: r.created };
      if (m.ingest) ready.exif = ready.frame = ready.thumbnail = m.ingest.endMs;
      if (m.exif) ready.geocode = m.exif.endMs;
      if (m.frame && m.thumbnail) ready.upload = Math.max(m.frame.endMs, m.thumbnail.endMs);
      for (const s of STAGES) {
        const l = m[s];
        const rd = ready[s];
        // A stage publishes its successors before it acks and logs, so a successor may start a
        // few ms before its predecessor's log line: such waits count as 0.
        if (l && rd !== undefined) add(s, Math.max(0, start(l) - rd), l.durationMs);
      }
    }
    const breakdownMs = Object.fromEntries(Object.entries(acc).map(([k, v]) => [k, { waitMs: mean(v.wait), serviceMs: mean(v.service) }]));
    return {
      stuck,
      disturbed,
      offeredPerSec: ratePerSec,
      durationSec,
      n,
      achievedPerSec: latencies.length / ((lastComplete - t0) / 1000),
      statuses: await this.statuses(ids),
      latencyMs: {
        p50: percentile(latencies, 50),
        p95: percentile(latencies, 95),
        p99: percentile(latencies, 99),
        max: Math.max(...latencies),
        mean: mean(latencies),
      },
      breakdownMs,
      uploadAcceptMs: { p50: percentile(acceptMs, 50), p99: percentile(acceptMs, 99) },
    };
  }
}
