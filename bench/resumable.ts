import { Redis } from 'ioredis';
import { ApiKeyRepo } from '../src/db/api-key-repo.js';
import { BlobStore } from '../src/shared/blob-store.js';
import type { Stack } from '../test/helpers/stack.js';
import { paddedJpeg, type Corpus } from './lib/corpus.js';
import { CpuMeter, pidsByComm } from './lib/proc.js';
import { median } from './lib/stats.js';

/**
 * (7) What a resumable (tus) upload costs over a plain one, for a 2 MB and a 20 MB photo, measured
 * side by side in one run: each repetition uploads the same body once per way, in turn, one upload
 * at a time (a phone sends one photo at a time), workers stopped. Per way: the client's wall time
 * from the first request to the answer naming the photo (median), and the CPU time of the API
 * process and of Redis per upload (/proc, mean over the repetitions).
 *
 *   plain            POST /v1/photos, raw body (202)
 *   tus, 1 PATCH     POST /v1/uploads, then one PATCH with the whole body (what tus-js-client does
 *                    with its default chunkSize); the last PATCH answers X-Photo-Id
 *   tus, 5 MiB PATCHes  the same in PATCHes of 5 MiB (a client that bounds what a cut costs it)
 *
 * The resumable way stores the bytes twice in Redis (appended to the upload's key as they arrive,
 * then handed to acceptPhoto, which writes the photo's blob) and reads them back once in between.
 */

export interface ResumableWay {
  way: string;
  /** Client wall time per upload, ms (median over the repetitions). */
  wallMs: number;
  /** CPU ms per upload by process group (median). */
  cpuMs: Record<string, number>;
  requests: number;
  runs: number[];
}

export interface ResumableSize {
  label: string;
  bytes: number;
  ways: ResumableWay[];
  /** Resumable (1 PATCH) over plain: wall time and API + Redis CPU. */
  extraWallMs: number;
  wallRatio: number;
  extraCpuMs: number;
  cpuRatio: number;
}

export interface ResumableResult {
  reps: number;
  sizes: ResumableSize[];
}

const SIZES = [
  { label: '2 MB', bytes: 2 * 1024 * 1024, fixture: 'jpg/hdr/iphone_hdr_NO.jpg' },
  { label: '20 MB', bytes: 20 * 1024 * 1024, fixture: 'jpg/mobile/HMD_Nokia_8.3_5G.jpg' },
];
const CHUNK = 5 * 1024 * 1024;
const REDIS = 'redis-server (shared)';

type Upload = (body: Buffer) => Promise<{ photoId: string; requests: number }>;

export async function runResumable(stack: Stack, corpus: Corpus, o: { reps: number; log: (s: string) => void }): Promise<ResumableResult> {
  if (!stack.api) throw new Error('the stack has no API process');
  // A tenant of its own: the upload rate limit of the stack's tenant may be spent by (4).
  const { key } = await new ApiKeyRepo(stack.db).create(`bench_tus_${Date.now().toString(36)}`);
  const cleaner = new Redis(stack.config.REDIS_URL, { maxRetriesPerRequest: 1 });
  const blobs = new BlobStore(cleaner, stack.config.REDIS_KEY_PREFIX);
  const auth = { authorization: `Bearer ${key}` };
  const tusHeaders = { ...auth, 'tus-resumable': '1.0.0' };
  // No workers run during the bench: an accepted photo's bytes would stay in Redis.
  const cleanUp = async (done: { photoId: string }) => {
    await cleaner.unlink(blobs.key(done.photoId, 'raw'));
  };

  const plain: Upload = async (body) => {
    const res = await fetch(`${stack.apiUrl}/v1/photos`, { method: 'POST', headers: { ...auth, 'content-type': 'application/octet-stream' }, body });
    const json = (await res.json()) as { id?: string };
    if (res.status !== 202 || !json.id) throw new Error(`plain upload answered ${res.status}`);
    return { photoId: json.id, requests: 1 };
  };
  const resumable =
    (chunk: number): Upload =>
    async (body) => {
      const created = await fetch(`${stack.apiUrl}/v1/uploads`, {
        method: 'POST',
        headers: { ...tusHeaders, 'upload-length': String(body.length), 'upload-metadata': `filename ${Buffer.from('bench.jpg').toString('base64')}` },
      });
      const location = created.headers.get('location');
      if (created.status !== 201 || !location) throw new Error(`tus creation answered ${created.status}`);
      let requests = 1;
      let photoId: string | null = null;
      for (let offset = 0; offset < body.length; offset += chunk) {
        const res = await fetch(`${stack.apiUrl}${location}`, {
          method: 'PATCH',
          headers: { ...tusHeaders, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
          body: body.subarray(offset, offset + chunk),
        });
        requests++;
        await res.arrayBuffer();
        if (res.status !== 204) throw new Error(`tus PATCH answered ${res.status}`);
        photoId = res.headers.get('x-photo-id');
      }
      if (!photoId) throw new Error('the last PATCH named no photo');
      return { photoId, requests };
    };

  const ways: [string, Upload][] = [
    ['plain', plain],
    ['tus, 1 PATCH', resumable(Number.MAX_SAFE_INTEGER)],
    ['tus, 5 MiB PATCHes', resumable(CHUNK)],
  ];
  const groups = () => ({ api: [stack.api?.pid ?? -1], [REDIS]: pidsByComm(['redis-server']).map((p) => p.pid) });

  try {
    const sizes: ResumableSize[] = [];
    for (const s of SIZES) {
      const fixture = corpus.photos.find((p) => p.file === s.fixture) ?? corpus.photos[0]!;
      const body = paddedJpeg(fixture.bytes, s.bytes);
      const applicable = ways.filter(([name]) => name !== 'tus, 5 MiB PATCHes' || body.length > CHUNK);
      const samples = new Map<string, { wall: number[]; cpu: Record<string, number>[]; requests: number }>();
      // One warm-up round per way (JIT, connections, the key cache), not counted.
      for (const [, upload] of applicable) await cleanUp(await upload(body));
      for (let rep = 0; rep < o.reps; rep++) {
        for (const [name, upload] of applicable) {
          const meter = new CpuMeter(groups);
          meter.snapshot();
          const t0 = performance.now();
          const done = await upload(body);
          const wall = performance.now() - t0;
          const cpu = meter.diff();
          await cleanUp(done);
          const entry = samples.get(name) ?? { wall: [], cpu: [], requests: done.requests };
          entry.wall.push(wall);
          entry.cpu.push(cpu);
          samples.set(name, entry);
        }
      }
      const result: ResumableWay[] = applicable.map(([name]) => {
        const e = samples.get(name)!;
        const keys = [...new Set(e.cpu.flatMap((c) => Object.keys(c)))];
        // CPU is read in 10 ms ticks (/proc): the mean over the repetitions resolves it, a median would not.
        const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
        return { way: name, wallMs: median(e.wall), cpuMs: Object.fromEntries(keys.map((k) => [k, mean(e.cpu.map((c) => c[k] ?? 0))])), requests: e.requests, runs: e.wall };
      });
      const p = result.find((w) => w.way === 'plain')!;
      const t = result.find((w) => w.way === 'tus, 1 PATCH')!;
      // What the upload costs the system: the API process and Redis (not the bench's own client).
      const cpuOf = (w: ResumableWay) => (w.cpuMs.api ?? 0) + (w.cpuMs[REDIS] ?? 0);
      const size: ResumableSize = {
        label: s.label,
        bytes: body.length,
        ways: result,
        extraWallMs: t.wallMs - p.wallMs,
        wallRatio: t.wallMs / p.wallMs,
        extraCpuMs: cpuOf(t) - cpuOf(p),
        cpuRatio: cpuOf(t) / cpuOf(p),
      };
      sizes.push(size);
      for (const w of result) o.log(`  ${s.label} ${w.way}: ${w.wallMs.toFixed(1)} ms wall, ${Object.entries(w.cpuMs).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')} CPU ms`);
    }
    return { reps: o.reps, sizes };
  } finally {
    await cleaner.quit().catch(() => cleaner.disconnect());
  }
}
