import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { BlobStore } from '../src/shared/blob-store.js';
import { createDb } from '../src/shared/db.js';
import { createLogger } from '../src/shared/logger.js';
import { PhotoIntakeRepo } from '../src/db/photos/photo-intake-repo.js';
import { Broker } from '../src/queues/broker.js';
import { buildTopology } from '../src/queues/topology.js';
import type { Stack } from '../test/helpers/stack.js';
import { paddedJpeg, type Corpus } from './lib/corpus.js';
import { CpuMeter, pidsByComm, Sampler } from './lib/proc.js';
import { mb, median, percentile } from './lib/stats.js';

/**
 * (4) The upload API alone (no workers running): autocannon POSTs one fixed body at a fixed
 * concurrency; and, as its ceiling, a plain ioredis SET loop of the same body at the same
 * concurrency over one connection (the API, too, holds one Redis connection).
 *
 * Accepted uploads would pile up in Redis at hundreds of MB per second, so in both runs the
 * stored key is deleted again (UNLINK from a separate connection) as soon as its write is
 * acknowledged: the same extra Redis command on both sides, and Redis memory stays flat.
 */

export interface ApiRun {
  /** CPU ms per accepted upload, by process, during the run (/proc). */
  cpuMsPerUpload: Record<string, number>;
  uploadsPerSec: number;
  mbPerSec: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

export interface CeilingRun {
  cpuMsPerSet: Record<string, number>;
  setsPerSec: number;
  mbPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface ApiSizeResult {
  label: string;
  bodyBytes: number;
  api: { runs: ApiRun[]; uploadsPerSec: number; mbPerSec: number; p50Ms: number; p99Ms: number; non2xx: number; errors: number; cpuMsPerUpload: Record<string, number> };
  ceiling: { runs: CeilingRun[]; setsPerSec: number; mbPerSec: number; p50Ms: number; p99Ms: number; cpuMsPerSet: Record<string, number> };
  ratio: number;
  apiPeakRssBytes: number;
}

export interface ComponentRun {
  name: string;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface ApiResult {
  /** Each step of the upload path alone, at the same concurrency, from this process. */
  components: ComponentRun[];
  concurrency: number;
  durationSec: number;
  reps: number;
  sizes: ApiSizeResult[];
  apiPeakRssBytes: number;
}

const SIZES = [
  { label: '200 KB', bytes: 200 * 1024, fixture: 'jpg/gps/DSCN0010.jpg' },
  { label: '2 MB', bytes: 2 * 1024 * 1024, fixture: 'jpg/hdr/iphone_hdr_NO.jpg' },
];

/** CPU meters over the processes an upload touches (Postgres: this stack's backends only). */
async function meterFor(stack: Stack, withApi: boolean): Promise<CpuMeter> {
  const { rows } = await stack.db.query(`SELECT pid FROM pg_stat_activity WHERE datname = $1`, [stack.name]);
  const groups: Record<string, number[]> = {
    'redis-server (shared)': pidsByComm(['redis-server']).map((p) => p.pid),
  };
  if (withApi && stack.api) {
    groups.api = [stack.api.pid];
    groups['postgres (this database)'] = rows.map((r) => r.pid as number);
    groups['rabbitmq (shared)'] = pidsByComm(['beam.smp']).map((p) => p.pid);
  }
  const meter = new CpuMeter(() => groups);
  meter.snapshot();
  return meter;
}

const perOp = (cpu: Record<string, number>, n: number) => Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, n > 0 ? v / n : Number.NaN]));

async function apiRun(stack: Stack, body: Buffer, o: { concurrency: number; durationSec: number }, cleaner: Redis, blobs: BlobStore): Promise<ApiRun> {
  const meter = await meterFor(stack, true);
  const result = await autocannon({
    url: `${stack.apiUrl}/v1/photos`,
    connections: o.concurrency,
    pipelining: 1,
    duration: o.durationSec,
    timeout: 30,
    requests: [
      {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'image/jpeg' },
        body,
        onResponse: (status: number, resBody: string) => {
          if (status !== 202) return;
          try {
            const id = (JSON.parse(resBody) as { id?: string }).id;
            if (id) void cleaner.unlink(blobs.key(id, 'raw')).catch(() => {});
          } catch {
            // not JSON: counted as a non-2xx or mismatch by autocannon anyway
          }
        },
      },
    ],
  });
  const ok = result['2xx'];
  return {
    cpuMsPerUpload: perOp(meter.diff(), ok),
    uploadsPerSec: ok / result.duration,
    mbPerSec: mb((ok * body.length) / result.duration),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

async function ceilingRun(stack: Stack, body: Buffer, o: { concurrency: number; durationSec: number }, cleaner: Redis): Promise<CeilingRun> {
  const redis = new Redis(stack.config.REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    await redis.ping();
    const latencies: number[] = [];
    let n = 0;
    const meter = await meterFor(stack, false);
    const deadline = performance.now() + o.durationSec * 1000;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: o.concurrency }, async (_, slot) => {
        let i = 0;
        while (performance.now() < deadline) {
          const key = `${stack.config.REDIS_KEY_PREFIX}bench:ceiling:${slot}:${i++}`;
          const s = performance.now();
          await redis.set(key, body); // the same command BlobStore.put sends
          latencies.push(performance.now() - s);
          n++;
          void cleaner.unlink(key).catch(() => {});
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return { cpuMsPerSet: perOp(meter.diff(), n), setsPerSec: n / seconds, mbPerSec: mb((n * body.length) / seconds), p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
  } finally {
    redis.disconnect();
  }
}

export async function runUploadApi(stack: Stack, corpus: Corpus, o: { concurrency: number; durationSec: number; reps: number; log: (s: string) => void }): Promise<ApiResult> {
  if (!stack.api) throw new Error('the stack has no API process');
  const cleaner = new Redis(stack.config.REDIS_URL, { maxRetriesPerRequest: 1 });
  const blobs = new BlobStore(cleaner, stack.config.REDIS_KEY_PREFIX);
  const bodies = SIZES.map((s) => {
    const fixture = corpus.photos.find((p) => p.file === s.fixture) ?? corpus.photos[0]!;
    return { ...s, body: paddedJpeg(fixture.bytes, s.bytes) };
  });
  try {
    // Warm-up: JIT, connection pools, the API key cache.
    await apiRun(stack, bodies[0]!.body, { concurrency: o.concurrency, durationSec: 1 }, cleaner, blobs);
    const apiRuns = new Map<string, ApiRun[]>();
    const ceilRuns = new Map<string, CeilingRun[]>();
    const rss = new Map<string, number>();
    for (let rep = 0; rep < o.reps; rep++) {
      for (const b of bodies) {
        const sampler = new Sampler([{ name: 'api', pid: stack.api.pid }], null, 100);
        await sampler.start();
        const a = await apiRun(stack, b.body, o, cleaner, blobs);
        const s = await sampler.stop();
        rss.set(b.label, Math.max(rss.get(b.label) ?? 0, s.peakRss.api ?? 0));
        const c = await ceilingRun(stack, b.body, o, cleaner);
        apiRuns.set(b.label, [...(apiRuns.get(b.label) ?? []), a]);
        ceilRuns.set(b.label, [...(ceilRuns.get(b.label) ?? []), c]);
        o.log(
          `  api rep ${rep + 1}/${o.reps} ${b.label}: ${a.uploadsPerSec.toFixed(0)} uploads/s ${a.mbPerSec.toFixed(1)} MB/s p99 ${a.p99Ms} ms` +
            ` (non-2xx ${a.non2xx}, errors ${a.errors}) | redis SET ${c.mbPerSec.toFixed(1)} MB/s p99 ${c.p99Ms.toFixed(1)} ms`,
        );
      }
    }
    const sizes = bodies.map((b): ApiSizeResult => {
      const ar = apiRuns.get(b.label) ?? [];
      const cr = ceilRuns.get(b.label) ?? [];
      const api = {
        runs: ar,
        uploadsPerSec: median(ar.map((r) => r.uploadsPerSec)),
        mbPerSec: median(ar.map((r) => r.mbPerSec)),
        p50Ms: median(ar.map((r) => r.p50Ms)),
        p99Ms: median(ar.map((r) => r.p99Ms)),
        non2xx: ar.reduce((s, r) => s + r.non2xx, 0),
        errors: ar.reduce((s, r) => s + r.errors, 0),
        cpuMsPerUpload: medianRecord(ar.map((r) => r.cpuMsPerUpload)),
      };
      const ceiling = {
        runs: cr,
        setsPerSec: median(cr.map((r) => r.setsPerSec)),
        mbPerSec: median(cr.map((r) => r.mbPerSec)),
        p50Ms: median(cr.map((r) => r.p50Ms)),
        p99Ms: median(cr.map((r) => r.p99Ms)),
        cpuMsPerSet: medianRecord(cr.map((r) => r.cpuMsPerSet)),
      };
      return { label: b.label, bodyBytes: b.body.length, api, ceiling, ratio: api.mbPerSec / ceiling.mbPerSec, apiPeakRssBytes: rss.get(b.label) ?? 0 };
    });
    // Uploads still in flight when a run ended left their bytes behind: nothing consumes them (no workers).
    await unlinkMatching(cleaner, `${stack.config.REDIS_KEY_PREFIX}blob:*`);
    const components = await runComponents(stack, bodies[0]!.body, o);
    for (const c of components) o.log(`  component ${c.name}: ${c.opsPerSec.toFixed(0)}/s p50 ${c.p50Ms.toFixed(1)} ms p99 ${c.p99Ms.toFixed(1)} ms`);
    return {
      components,
      concurrency: o.concurrency,
      durationSec: o.durationSec,
      reps: o.reps,
      sizes,
      apiPeakRssBytes: Math.max(...sizes.map((s) => s.apiPeakRssBytes)),
    };
  } finally {
    await cleaner.quit().catch(() => cleaner.disconnect());
  }
}

async function unlinkMatching(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

/** `concurrency` loops calling fn for durationSec; operations per second and latency percentiles. */
async function closedLoop(name: string, concurrency: number, durationSec: number, fn: (i: number) => Promise<unknown>): Promise<ComponentRun> {
  const latencies: number[] = [];
  let i = 0;
  const t0 = performance.now();
  const deadline = t0 + durationSec * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const s = performance.now();
        await fn(i++);
        latencies.push(performance.now() - s);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { name, opsPerSec: latencies.length / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

/**
 * What one upload costs the API, step by step, each step alone at the API's concurrency with the
 * API's own code (PhotoIntakeRepo.insertQueued, Broker.publishToStage with publisher confirms on the
 * quorum ingest queue, the Redis SET of the body): shows which step bounds the API.
 */
async function runComponents(stack: Stack, body: Buffer, o: { concurrency: number; durationSec: number }): Promise<ComponentRun[]> {
  const config = stack.config;
  const log = createLogger({ LOG_LEVEL: 'warn' }, { role: 'bench' }, 'stderr');
  const db = createDb(config, log, 'photopipe-bench');
  const photos = new PhotoIntakeRepo(db);
  const broker = new Broker(config, buildTopology(config), log, 'photopipe-bench');
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1 });
  const cleaner = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1 });
  const blobs = new BlobStore(redis, config.REDIS_KEY_PREFIX);
  try {
    await broker.waitReady();
    const d = Math.max(1, Math.min(o.durationSec, 3));
    const out: ComponentRun[] = [];
    out.push(
      await closedLoop(`Redis SET ${Math.round(body.length / 1024)} KB (BlobStore.put)`, o.concurrency, d, async () => {
        const id = randomUUID();
        await blobs.put(id, 'raw', body);
        void cleaner.unlink(blobs.key(id, 'raw')).catch(() => {});
      }),
    );
    out.push(
      await closedLoop('Postgres INSERT photo (PhotoIntakeRepo.insertQueued)', o.concurrency, d, () =>
        photos.insertQueued({ id: randomUUID(), tenantId: stack.tenant, originalName: null, contentType: 'image/jpeg', bytes: body.length, format: 'jpeg' }),
      ),
    );
    out.push(
      await closedLoop('RabbitMQ publish + confirm, quorum queue (Broker.publishToStage)', o.concurrency, d, () =>
        broker.publishToStage('ingest', { v: 1, photoId: randomUUID(), tenantId: stack.tenant, rawKey: `${config.REDIS_KEY_PREFIX}bench:none` }),
      ),
    );
    await stack.amqp((ch) => ch.purgeQueue(stack.queue('ingest')));
    return out;
  } finally {
    await broker.close();
    await db.end();
    redis.disconnect();
    await cleaner.quit().catch(() => cleaner.disconnect());
  }
}

function medianRecord(records: Record<string, number>[]): Record<string, number> {
  const keys = [...new Set(records.flatMap((r) => Object.keys(r)))];
  return Object.fromEntries(keys.map((k) => [k, median(records.map((r) => r[k] ?? Number.NaN))]));
}
