import { webcrypto } from 'node:crypto';
import { extractExif } from '../src/imaging/exif.js';
import { getDefaultFrame, readImageInfo, renderFramed, renderThumbnail, type FrameSpec, type RenderOptions } from '../src/imaging/render.js';
import type { Corpus } from './lib/corpus.js';
import { median } from './lib/stats.js';

/**
 * (1) The physical limit: the image work of the ingest (SHA-256 + header), exif, frame and
 * thumbnail stages, done by the very functions those stages call, in this one process on
 * in-memory buffers. No Redis, RabbitMQ, Postgres or S3: the ceiling the pipeline can approach.
 */

export interface LimitRun {
  concurrency: number;
  photos: number;
  seconds: number;
  photosPerSec: number;
  cpuMsPerPhoto: number;
}

export interface LimitResult {
  concurrencies: number[];
  reps: number;
  photosPerRep: number;
  runs: LimitRun[];
  byConcurrency: { concurrency: number; medianPhotosPerSec: number; medianCpuMsPerPhoto: number; reps: number[] }[];
  best: { concurrency: number; photosPerSec: number; cpuMsPerPhoto: number };
  perOperationCpuMs: Record<string, number>;
}

const opts = (): RenderOptions => ({ maxInputPixels: 75_000_000, signal: new AbortController().signal, timeoutMs: 60_000 });

/** Same as the ingest stage: WebCrypto's digest runs on the libuv thread pool. */
async function sha256Hex(bytes: Buffer): Promise<string> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', bytes)).toString('hex');
}

/** One photo's work; the stages after ingest run concurrently in the pipeline, so they do here. */
async function processPhoto(bytes: Buffer, frame: FrameSpec): Promise<void> {
  const o = opts();
  await Promise.all([sha256Hex(bytes), readImageInfo(bytes, o)]);
  await Promise.all([extractExif(bytes), renderFramed(bytes, frame, o), renderThumbnail(bytes, o)]);
}

async function runOnce(inputs: Buffer[], concurrency: number, frame: FrameSpec): Promise<LimitRun> {
  let next = 0;
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < inputs.length) await processPhoto(inputs[next++]!, frame);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const used = process.cpuUsage(cpu);
  return { concurrency, photos: inputs.length, seconds, photosPerSec: inputs.length / seconds, cpuMsPerPhoto: (used.user + used.system) / 1000 / inputs.length };
}

/** CPU ms per photo of each operation alone, sequentially: where the limit's time goes. */
async function perOperation(inputs: Buffer[], frame: FrameSpec): Promise<Record<string, number>> {
  const ops: Record<string, (b: Buffer) => Promise<unknown>> = {
    'sha256 (ingest)': (b) => sha256Hex(b),
    'header (ingest)': (b) => readImageInfo(b, opts()),
    'exif (exifr)': (b) => extractExif(b),
    'frame (renderFramed)': (b) => renderFramed(b, frame, opts()),
    'thumbnail (renderThumbnail)': (b) => renderThumbnail(b, opts()),
  };
  const out: Record<string, number> = {};
  for (const [name, fn] of Object.entries(ops)) {
    const cpu = process.cpuUsage();
    for (const b of inputs) await fn(b);
    const used = process.cpuUsage(cpu);
    out[name] = (used.user + used.system) / 1000 / inputs.length;
  }
  return out;
}

/** The in-process limit, run by the orchestrator: a concurrency sweep, then single runs next to pipeline runs. */
export class LimitBench {
  private constructor(
    private readonly frame: FrameSpec,
    private readonly inputs: Buffer[],
    private readonly corpus: Corpus,
  ) {}

  static async create(corpus: Corpus, repeat: number): Promise<LimitBench> {
    const inputs: Buffer[] = [];
    for (let r = 0; r < repeat; r++) for (const p of corpus.photos) inputs.push(p.bytes);
    const bench = new LimitBench(await getDefaultFrame(), inputs, corpus);
    // Warm-up: JIT, libvips start-up, the frame PNG.
    await runOnce(corpus.photos.map((p) => p.bytes), 2, bench.frame);
    return bench;
  }

  get photosPerRun(): number {
    return this.inputs.length;
  }

  run(concurrency: number): Promise<LimitRun> {
    return runOnce(this.inputs, concurrency, this.frame);
  }

  perOperation(): Promise<Record<string, number>> {
    return perOperation(this.corpus.photos.map((p) => p.bytes), this.frame);
  }
}

export function summarizeLimit(runs: LimitRun[], o: { concurrencies: number[]; reps: number; photosPerRep: number; perOperationCpuMs: Record<string, number> }): LimitResult {
  const byConcurrency = o.concurrencies.map((c) => {
    const rs = runs.filter((r) => r.concurrency === c);
    return {
      concurrency: c,
      medianPhotosPerSec: median(rs.map((r) => r.photosPerSec)),
      medianCpuMsPerPhoto: median(rs.map((r) => r.cpuMsPerPhoto)),
      reps: rs.map((r) => r.photosPerSec),
    };
  });
  const best = byConcurrency.reduce((a, b) => (b.medianPhotosPerSec > a.medianPhotosPerSec ? b : a));
  return {
    concurrencies: o.concurrencies,
    reps: o.reps,
    photosPerRep: o.photosPerRep,
    runs,
    byConcurrency,
    best: { concurrency: best.concurrency, photosPerSec: best.medianPhotosPerSec, cpuMsPerPhoto: best.medianCpuMsPerPhoto },
    perOperationCpuMs: o.perOperationCpuMs,
  };
}
