/**
 * `npm run bench` (issue 8): throughput, latency, memory and scaling of photopipe, each figure
 * next to its reference measured in the same run:
 *   (1) physical limit  - the stages' image work in one process on in-memory buffers
 *   (2) pipeline        - the real system end to end (API, Redis, RabbitMQ, workers, Postgres, S3)
 *   (3) seed baseline   - the seed's Python + PIL worker algorithm (bench/seed_worker.py)
 *   (4) upload API      - autocannon at concurrency 16, against a plain ioredis SET loop
 *   (5) scaling         - 1 vs 2 processes per CPU-bound worker role
 *   (6) memory          - peak RSS per role and peak Redis memory, N vs 2N photos
 *   (7) resumable       - a tus upload against a plain one, 2 MB and 20 MB, one at a time
 *   (8) batch           - batch ingestion: the overlap of downloads, pipeline and hand-over
 *   goals               - the performance goals of issue 20 on the default `npm start` stack (bench/goals/)
 * Prints tables and writes everything to bench/results/latest.json. `--quick`: about a minute.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { Stack } from '../test/helpers/stack.js';
import { loadConfig, STAGES, type StageName } from '../src/shared/config.js';
import { CORPUS_DIRS, largePhotos, loadCorpus, type Corpus } from './lib/corpus.js';
import { localVersions, machineInfo, serviceVersions, type Versions } from './lib/machine.js';
import { fmt, mb, median, ratio, round } from './lib/stats.js';
import { table } from './lib/table.js';
import { LimitBench, summarizeLimit, type LimitResult, type LimitRun } from './limit.js';
import { runSeedOnce, SEED_INSTALL, seedAvailable, summarizeSeed, type SeedResult, type SeedRun } from './seed.js';
import { runUploadApi, type ApiResult } from './upload-api.js';
import { runResumable, type ResumableResult } from './resumable.js';
import { CPU_BOUND_ROLES, PipelineBench, type BatchResult, type SteadyResult } from './pipeline.js';
import { BENCH_CPU } from './lib/proc.js';
import type { BatchBenchResult } from './batch.js';
import { renderGoals, runGoals, type GoalsResult } from './goals/run-goals.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    n: { type: 'string' },
    out: { type: 'string' },
    skip: { type: 'string', default: '' },
    'batch-n': { type: 'string' },
    'goals-n': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  process.stdout.write(`npm run bench [-- --quick] [--n N] [--batch-n N] [--goals-n N] [--out FILE] [--skip limit,seed,api,pipeline,resumable,batch,goals]

  --quick   about five minutes: small N, one repetition each (indicative only)
  --n N     photos per pipeline run (default 300, quick 30); the memory run uses 2N
  --out     JSON results file (default bench/results/latest.json)
  --batch-n URLs in the batch-ingestion run (default 1000, quick 200)
  --goals-n photos per e2e run of the goals section (default 200, quick 48); its memory run uses 2N
  --skip    leave sections out (for development)
`);
  process.exit(0);
}

const quick = args.quick ?? false;
const skip = new Set((args.skip ?? '').split(',').map((s) => s.trim()).filter(Boolean));
const machine = machineInfo();
const N = Number(args.n ?? (quick ? 30 : 300));
if (!Number.isInteger(N) || N < 5) throw new Error('--n must be an integer >= 5');

const plan = {
  mode: quick ? 'quick' : 'full',
  budgetSec: quick ? 75 : 570,
  limit: { concurrencies: [1, 2, 4, 8], reps: quick ? 1 : 3, repeat: 1, perOperation: !quick },
  seed: { repeat: 1, procs: machine.cores },
  api: { concurrency: 16, durationSec: quick ? 2 : 3, reps: quick ? 1 : 3 },
  resumable: { reps: quick ? 3 : 8 },
  pipeline: {
    n: N,
    memoryN: 2 * N,
    reps: quick ? 1 : 2,
    uploadConcurrency: 8,
    warmupPhotos: quick ? 8 : 20,
    steadyFractionOfThroughput: 0.5,
    steadyDurationSec: quick ? 6 : 15,
    /** A run stops waiting when none of its photos became final for this long; the rest are reported stuck. */
    stallMs: quick ? 10_000 : 20_000,
    scaledRoles: CPU_BOUND_ROLES,
    /** Photos per run of the large-photo comparison, and how often the in-process references repeat the subset. */
    largeN: quick ? 18 : 72,
    largeRepeat: quick ? 2 : 4,
  },
};

const stackEnv: Record<string, string> = {
  // Not production: a production process refuses the development credentials of the local
  // services the bench stack runs on (Postgres superuser, RabbitMQ guest, s3rver's key), and
  // NODE_ENV changes nothing else in photopipe (test faults need 'test').
  NODE_ENV: 'development',
  LOG_LEVEL: 'warn',
  // The bench measures throughput, not a tenant's fair share: one tenant's per-minute upload rate
  // and in-flight cap (1,200/min, 10,000 by default) would answer most of (4)'s uploads 429.
  TENANT_UPLOADS_PER_MINUTE: '0',
  TENANT_MAX_IN_FLIGHT: '0',
};
/** Workers log at info: the per-message "stage done" lines (with durationMs) are the per-stage profile. */
const workerEnv: Record<string, string> = { LOG_LEVEL: 'info' };

const started = Date.now();
const elapsedSec = () => (Date.now() - started) / 1000;
const log = (s: string) => process.stderr.write(`[${elapsedSec().toFixed(0).padStart(3)}s] ${s}\n`);

interface Goal {
  goal: string;
  measured: string;
  status: 'PASS' | 'FAIL' | 'n/a' | 'skipped';
  note?: string;
}

interface PipelineResults {
  stackName: string;
  logFiles: string;
  warmup: BatchResult | null;
  warmup2: BatchResult | null;
  batches: BatchResult[];
  /** Each 1-process run with the limit and the seed measured right after it. */
  pairs: Pair[];
  pairedToLimit: number;
  pairedToSeed: number;
  oneProcess: { runs: number[]; medianPhotosPerSec: number };
  twoProcesses: { runs: number[]; medianPhotosPerSec: number };
  scalingRatio: number;
  memory: { n: number; twoN: number; peakRssN: Record<string, number>; peakRss2N: Record<string, number>; redisPeakDeltaN: number; redisPeakDelta2N: number };
  steady: SteadyResult | null;
  /** The same comparison on the corpus's photos of 3 MP and more, side by side. */
  large: LargeResult | null;
  skippedRuns: string[];
  /** Runs done twice because a shared service restarted under them. */
  retried: string[];
}

interface LargeResult {
  files: string[];
  meanMegapixels: number;
  pipelinePhotosPerSec: number;
  limitPhotosPerSec: number | null;
  seedPhotosPerSec: number | null;
  toLimit: number;
  toSeed: number;
}

async function main(): Promise<void> {
  const versions: Versions = localVersions();
  const corpus = loadCorpus();
  log(`photopipe bench (${plan.mode}): ${machine.cores} cores, ${machine.cpuModel}; corpus ${corpus.photos.length} JPEGs`);

  // (1) and (3) side by side: each repetition sweeps the concurrencies, then runs the seed once.
  const lb = skip.has('limit') ? null : await LimitBench.create(corpus, plan.limit.repeat);
  const seedCheck = skip.has('seed') ? null : seedAvailable();
  if (seedCheck && !seedCheck.ok) log(`(3) seed baseline skipped: ${seedCheck.reason}; install with: ${SEED_INSTALL}`);
  const seedOk = seedCheck?.ok === true;
  const limitRuns: LimitRun[] = [];
  const seedRuns: SeedRun[] = [];
  for (let rep = 0; rep < plan.limit.reps; rep++) {
    if (lb) {
      for (const c of plan.limit.concurrencies) {
        const run = await lb.run(c);
        limitRuns.push(run);
        log(`(1) limit rep ${rep + 1}/${plan.limit.reps} concurrency ${c}: ${run.photosPerSec.toFixed(2)} photos/s, ${run.cpuMsPerPhoto.toFixed(1)} CPU ms/photo`);
      }
    }
    if (seedOk) {
      const run = await runSeedOnce(corpus, plan.seed);
      seedRuns.push(run);
      log(`(3) seed rep ${rep + 1}/${plan.limit.reps}: ${run.photosPerSec.toFixed(2)} photos/s (${run.procs} processes)`);
    }
  }
  const limit = lb
    ? summarizeLimit(limitRuns, {
        concurrencies: plan.limit.concurrencies,
        reps: plan.limit.reps,
        photosPerRep: lb.photosPerRun,
        perOperationCpuMs: plan.limit.perOperation ? await lb.perOperation() : {},
      })
    : null;
  const seed: SeedResult | null = !seedCheck ? null : seedOk ? summarizeSeed(seedRuns) : { skipped: true, reason: seedCheck.ok ? '' : seedCheck.reason, install: SEED_INSTALL };
  if (seed && !seed.skipped) {
    versions.python = seed.python;
    versions.pil = seed.pil;
  }

  let api: ApiResult | null = null;
  let pipeline: PipelineResults | null = null;
  let resumable: ResumableResult | null = null;
  let batch: BatchBenchResult | null = null;
  if (!skip.has('api') || !skip.has('pipeline') || !skip.has('resumable')) {
    log('starting an isolated stack (own database, AMQP prefix, Redis prefix, local S3)');
    const stack = await Stack.start({ api: true, workers: 'none', env: stackEnv });
    // Whatever happens, the stack's processes, database, queues and keys must not outlive the bench.
    const abort = (why: string, code: number) => {
      log(`${why}: stopping the stack`);
      void stack.stop().finally(() => process.exit(code));
    };
    const onSignal = () => abort('interrupted', 130);
    const onCrash = (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      abort('unexpected error', 1);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.once('unhandledRejection', onCrash);
    process.once('uncaughtException', onCrash);
    try {
      Object.assign(versions, await serviceVersions(stack));
      const refs = { limit: lb, limitConcurrency: limit?.best.concurrency ?? 2, seed: seedOk };
      let bench: PipelineBench | null = null;
      if (!skip.has('pipeline')) {
        bench = new PipelineBench(stack, corpus, workerEnv, log);
        pipeline = await runPipeline(bench, corpus, refs);
      }
      if (!skip.has('api')) {
        if (bench) await bench.stopWorkers();
        log('(4) upload API (workers stopped) vs plain Redis SET loop');
        api = await runUploadApi(stack, corpus, { ...plan.api, log });
      }
      if (!skip.has('resumable')) {
        if (bench) await bench.stopWorkers();
        log('(7) resumable (tus) upload vs plain upload, 2 MB and 20 MB, one at a time (workers stopped)');
        resumable = await runResumable(stack, corpus, { ...plan.resumable, log });
      }
    } finally {
      log('stopping the stack');
      await stack.stop();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('unhandledRejection', onCrash);
      process.off('uncaughtException', onCrash);
    }
  }

  if (!skip.has('batch')) {
    const batchN = Number(args['batch-n'] ?? (quick ? 200 : 1_000));
    log(`(8) batch ingestion: ${batchN} URLs against a loopback origin and a fake batch API (a stack of its own)`);
    // Imported here: its test helpers do not exist in older checkouts, where `--skip batch` must still run.
    const { runBatchBench } = await import('./batch.js');
    batch = await runBatchBench(corpus, { n: batchN, log });
  }

  // Last: its upload rows leave a backlog behind (removed with its stack), and it summarises (7) and (8).
  let goals: GoalsResult | null = null;
  if (!skip.has('goals')) {
    log('(goals) performance goals of issue 20 on the default stack (node bin/photopipe.js start)');
    goals = await runGoals({
      quick,
      n: args['goals-n'] ? Number(args['goals-n']) : undefined,
      log,
      existing: {
        resumable: resumable ? resumable.sizes.map((s) => ({ label: s.label, extraWallMs: s.extraWallMs, extraCpuMs: s.extraCpuMs, wallRatio: s.wallRatio, cpuRatio: s.cpuRatio })) : null,
        batch: batch
          ? { overlapRatio: batch.overlapRatio, boundBy: batch.boundBy, totalSec: batch.overlapped.totalSec, longestAloneSec: Math.max(batch.alone.downloadSec, batch.alone.pipelineSec, batch.alone.apiSec) }
          : null,
      },
    });
  }

  const results = { ...buildResults({ versions, corpus, limit, seed, api, pipeline, resumable }), batch, performanceGoals: goals };
  const outFile = resolve(args.out ?? join(BENCH_DIR, 'results', 'latest.json'));
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`${render(results)}${renderBatch(batch)}${goals ? `\n${renderGoals(goals)}` : ''}\n\nJSON: ${outFile}\n`);
}

interface Pair {
  pipelinePhotosPerSec: number;
  limitPhotosPerSec: number | null;
  seedPhotosPerSec: number | null;
}

async function runPipeline(bench: PipelineBench, corpus: Corpus, refs: { limit: LimitBench | null; limitConcurrency: number; seed: boolean }): Promise<PipelineResults> {
  const p = plan.pipeline;
  const stack = bench.stack;
  log('(2) pipeline: starting one worker process per role');
  const startT0 = Date.now();
  await bench.startWorkers();
  const workerStartSec = (Date.now() - startT0) / 1000;
  const skippedRuns: string[] = [];
  const batches: BatchResult[] = [];
  const pairs: Pair[] = [];
  const describe = (b: BatchResult) =>
    `${b.photosPerSec.toFixed(2)} photos/s (${b.n} in ${b.seconds.toFixed(1)} s, uploads took ${b.uploadSeconds.toFixed(1)} s) ${JSON.stringify(b.statuses)}`;
  const opts = { uploadConcurrency: p.uploadConcurrency, stallMs: p.stallMs };
  const retried: string[] = [];
  /**
   * Other people's fault tests restart the shared Redis/Postgres on this machine now and then; a
   * run that overlapped such a restart (or failed on it) is run once more.
   */
  const checked = async <T extends { disturbed: string | null }>(what: string, fn: () => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await fn();
        if (!r.disturbed || attempt >= 2) return r;
        log(`  ${what}: ${r.disturbed} during the run; running it again`);
        retried.push(`${what}: ${r.disturbed}`);
      } catch (err) {
        if (attempt >= 2) throw err;
        log(`  ${what} failed (${(err as Error).message}); waiting for the services, running it again`);
        retried.push(`${what}: ${(err as Error).message}`);
      }
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        const e = await bench.serviceEpoch();
        if (e.redis !== 'unreachable' && e.postgres !== 'unreachable') break;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  };

  log(`  warm-up: ${p.warmupPhotos} photos`);
  const warmup = await checked('warm-up', () => bench.runBatch('warmup', p.warmupPhotos, opts));
  log(`  warm-up: ${describe(warmup)}`);

  const one: number[] = [];
  const two: number[] = [];
  let throughput = warmup.photosPerSec;
  const estimate = (n: number) => n / Math.max(throughput, 0.5) + 8;
  const apiSeconds = (2 * 2 * plan.api.durationSec + 2) * plan.api.reps + 15;
  // One repetition: the 1-process run, the references, scaling up, a warm-up, the 2-process run.
  const perRep = () => 2 * estimate(p.n) + 10 + workerStartSec + estimate(p.warmupPhotos);
  // After the repetitions: the large-photo run (phone-size photos take ~4x the time each), the 2N run, the steady run, the API part.
  const rest = () => 4 * estimate(p.largeN) + 15 + estimate(p.memoryN) + p.steadyDurationSec + 15 + apiSeconds + 10;
  let warm2: BatchResult | null = null;

  // Each repetition: 1 process per role, followed by the references (limit, seed) measured right
  // after it with the workers idle; then the same run with a second process per CPU-bound role.
  // So each ratio (to the limit, to the seed, 2 to 1 processes) is taken side by side.
  for (let rep = 0; rep < p.reps; rep++) {
    if (rep > 0 && elapsedSec() + perRep() + rest() > plan.budgetSec) {
      skippedRuns.push(`repetition ${rep + 1} of the 1- and 2-process runs (time budget of ${plan.budgetSec} s)`);
      log(`  skipping repetition ${rep + 1}: it would not fit the ${plan.budgetSec} s budget`);
      break;
    }
    const b1 = await checked(`1proc-rep${rep + 1}`, () => bench.runBatch(`1proc-rep${rep + 1}`, p.n, opts));
    batches.push(b1);
    one.push(b1.photosPerSec);
    throughput = b1.photosPerSec;
    log(`  1 process/role, rep ${rep + 1}: ${describe(b1)}`);
    const pair: Pair = { pipelinePhotosPerSec: b1.photosPerSec, limitPhotosPerSec: null, seedPhotosPerSec: null };
    if (refs.limit) pair.limitPhotosPerSec = (await refs.limit.run(refs.limitConcurrency)).photosPerSec;
    if (refs.seed) pair.seedPhotosPerSec = (await runSeedOnce(corpus, plan.seed)).photosPerSec;
    pairs.push(pair);
    log(`  right after it: limit ${fmt(pair.limitPhotosPerSec)} photos/s, seed ${fmt(pair.seedPhotosPerSec)} photos/s`);

    log(`(5) scaling: a second process for ${p.scaledRoles.join(', ')}`);
    await bench.scaleTo(p.scaledRoles, 2);
    // The new processes start cold (JIT, libvips, connection pools): warm them like the first ones.
    const w2 = await checked(`warmup-2proc-rep${rep + 1}`, () => bench.runBatch(`warmup-2proc-rep${rep + 1}`, p.warmupPhotos, opts));
    warm2 ??= w2;
    log(`  warm-up: ${describe(w2)}`);
    const b2 = await checked(`2proc-rep${rep + 1}`, () => bench.runBatch(`2proc-rep${rep + 1}`, p.n, opts));
    batches.push(b2);
    two.push(b2.photosPerSec);
    log(`  2 processes per ${p.scaledRoles.join('/')}, rep ${rep + 1}: ${describe(b2)}`);
    await bench.scaleTo(p.scaledRoles, 1);
  }

  // (2b)/(3b): phone-size photos only, pipeline then references, at 1 process per role.
  let large: LargeResult | null = null;
  const big3 = largePhotos(corpus);
  if (big3.photos.length > 0) {
    log(`(2b) photos of 3 MP and more (${big3.photos.length} files): ${p.largeN} photos, 1 process/role`);
    const bL = await checked('1proc-large', () => bench.runBatch('1proc-large', p.largeN, opts, big3));
    batches.push(bL);
    const limitL = refs.limit ? await (await LimitBench.create(big3, p.largeRepeat)).run(refs.limitConcurrency) : null;
    const seedL = refs.seed ? await runSeedOnce(big3, { procs: plan.seed.procs, repeat: p.largeRepeat }) : null;
    large = {
      files: big3.photos.map((x) => x.file),
      meanMegapixels: round(big3.megapixels / big3.photos.length, 2),
      pipelinePhotosPerSec: bL.photosPerSec,
      limitPhotosPerSec: limitL?.photosPerSec ?? null,
      seedPhotosPerSec: seedL?.photosPerSec ?? null,
      toLimit: ratio(bL.photosPerSec, limitL?.photosPerSec),
      toSeed: ratio(bL.photosPerSec, seedL?.photosPerSec),
    };
    log(`  ${describe(bL)}; right after it: limit ${fmt(large.limitPhotosPerSec)} photos/s, seed ${fmt(large.seedPhotosPerSec)} photos/s`);
  }

  log(`(6) memory: ${p.memoryN} photos, 1 process/role`);
  const big = await checked('1proc-2N', () => bench.runBatch('1proc-2N', p.memoryN, opts));
  batches.push(big);
  log(`  2N: ${describe(big)}`);

  const rate = round(Math.max(0.5, p.steadyFractionOfThroughput * median(one)), 2);
  log(`(2) latency at a steady ${rate} photos/s for ${p.steadyDurationSec} s (${p.steadyFractionOfThroughput * 100}% of the 1-process throughput)`);
  const steady = await checked('steady', () => bench.runSteady(rate, p.steadyDurationSec, { stallMs: p.stallMs }));
  log(`  p50 ${steady.latencyMs.p50.toFixed(0)} ms, p95 ${steady.latencyMs.p95.toFixed(0)} ms, p99 ${steady.latencyMs.p99.toFixed(0)} ms`);


  const firstN = batches.filter((b) => b.label.startsWith('1proc-rep'));
  const maxRss = (bs: BatchResult[]) => {
    const out: Record<string, number> = {};
    for (const b of bs) for (const [k, v] of Object.entries(b.peakRssBytes)) out[k] = Math.max(out[k] ?? 0, v);
    return out;
  };
  return {
    stackName: stack.name,
    logFiles: `.local/test-logs/${stack.name}-*.log`,
    warmup,
    warmup2: warm2,
    batches,
    pairs,
    pairedToLimit: median(pairs.map((x) => ratio(x.pipelinePhotosPerSec, x.limitPhotosPerSec))),
    pairedToSeed: median(pairs.map((x) => ratio(x.pipelinePhotosPerSec, x.seedPhotosPerSec))),
    oneProcess: { runs: one, medianPhotosPerSec: median(one) },
    twoProcesses: { runs: two, medianPhotosPerSec: median(two) },
    scalingRatio: ratio(median(two), median(one)),
    memory: {
      n: p.n,
      twoN: p.memoryN,
      peakRssN: maxRss(firstN),
      peakRss2N: big.peakRssBytes,
      redisPeakDeltaN: Math.max(...firstN.map((b) => b.redis?.peakDeltaBytes ?? 0)),
      redisPeakDelta2N: big.redis?.peakDeltaBytes ?? 0,
    },
    steady,
    large,
    skippedRuns,
    retried,
  };
}

function buildResults(r: { versions: Versions; corpus: Corpus; limit: LimitResult | null; seed: SeedResult | null; api: ApiResult | null; pipeline: PipelineResults | null; resumable: ResumableResult | null }) {
  const { limit, seed, api, pipeline } = r;
  const e2e = pipeline?.oneProcess.medianPhotosPerSec ?? Number.NaN;
  const seedPps = seed && !seed.skipped ? seed.medianPhotosPerSec : Number.NaN;
  const goals: Goal[] = [];

  // Headline ratios: the median of the per-run ratios, each measured right next to its reference
  // (robust when other work on the machine comes and goes); the ratio of medians is kept as well.
  const vsLimitMedians = ratio(e2e, limit?.best.photosPerSec);
  const vsSeedMedians = ratio(e2e, seedPps);
  const vsLimit = Number.isFinite(pipeline?.pairedToLimit) ? pipeline!.pairedToLimit : vsLimitMedians;
  const vsSeed = Number.isFinite(pipeline?.pairedToSeed) ? pipeline!.pairedToSeed : vsSeedMedians;
  goals.push({
    goal: 'end-to-end photos/s >= 0.8 x in-process limit',
    measured: `${fmt(vsLimit)} (ratio of medians ${fmt(vsLimitMedians)}: ${fmt(e2e)} / ${fmt(limit?.best.photosPerSec)})`,
    status: Number.isNaN(vsLimit) ? 'skipped' : vsLimit >= 0.8 ? 'PASS' : 'FAIL',
  });
  goals.push({
    goal: `end-to-end >= 1.5 x seed baseline (${machine.cores} cores each)`,
    measured: `${fmt(vsSeed)} (ratio of medians ${fmt(vsSeedMedians)}: ${fmt(e2e)} / ${fmt(seedPps)})`,
    status: Number.isNaN(vsSeed) ? 'skipped' : vsSeed >= 1.5 ? 'PASS' : 'FAIL',
    note: seed?.skipped ? `seed skipped: ${seed.reason}; install: ${seed.install}` : undefined,
  });
  for (const s of api?.sizes ?? []) {
    const ok = s.ratio >= 0.5 && s.api.p99Ms < 100;
    goals.push({
      goal: `upload API ${s.label}: MB/s >= 0.5 x Redis SET, p99 < 100 ms at c=${api?.concurrency}`,
      measured: `${fmt(s.ratio)} (${fmt(s.api.mbPerSec, 1)} / ${fmt(s.ceiling.mbPerSec, 1)} MB/s), p99 ${fmt(s.api.p99Ms, 0)} ms`,
      status: ok ? 'PASS' : 'FAIL',
    });
  }
  if (pipeline) {
    const enoughCores = machine.cores >= 2 * CPU_BOUND_ROLES.length;
    goals.push({
      goal: '1 -> 2 processes per CPU-bound role >= 1.8x (where cores allow)',
      measured: `${fmt(pipeline.scalingRatio)}x`,
      status: enoughCores ? (pipeline.scalingRatio >= 1.8 ? 'PASS' : 'FAIL') : 'n/a',
      note: enoughCores
        ? undefined
        : `${machine.cores} cores for ${CPU_BOUND_ROLES.length} CPU-bound roles plus API, S3, Postgres, RabbitMQ and Redis: with one process per role the cores are ` +
          `already saturated (see CPU time per photo), so a second process per role only shares the same cores; 1.8x needs >= ${2 * CPU_BOUND_ROLES.length} cores`,
    });
    const roles = STAGES.map((s) => `worker:${s}`);
    const growth = roles.map((k) => ratio(pipeline.memory.peakRss2N[k], pipeline.memory.peakRssN[k]));
    const worst = Math.max(...growth.filter((g) => Number.isFinite(g)));
    goals.push({
      goal: `worker peak RSS independent of N: 2N (${pipeline.memory.twoN}) / N (${pipeline.memory.n}) <= ${RSS_BOUND} for every role`,
      measured: `worst ${fmt(worst)}x`,
      status: worst <= RSS_BOUND ? 'PASS' : 'FAIL',
      note: `holding every upload of a run in a worker would add ~${fmt(mb((pipeline.memory.n * r.corpus.totalBytes) / r.corpus.photos.length), 0)} MB per N photos`,
    });
    const stuck = [...pipeline.batches.map((b) => b.stuck?.count ?? 0), pipeline.steady?.stuck?.count ?? 0].reduce((a, b) => a + b, 0);
    const total = pipeline.batches.reduce((a, b) => a + b.n, 0) + (pipeline.steady?.n ?? 0);
    goals.push({
      goal: 'every uploaded photo reaches a final state (sanity check)',
      measured: `${total - stuck} of ${total}`,
      status: stuck === 0 ? 'PASS' : 'FAIL',
      note: stuck > 0 ? 'photos stuck in "processing" with every handler done: see the WARNING lines under "pipeline runs"' : undefined,
    });
  } else {
    goals.push({ goal: '1 -> 2 processes scaling', measured: 'n/a', status: 'skipped' });
    goals.push({ goal: 'worker RSS bounded', measured: 'n/a', status: 'skipped' });
  }

  return {
    benchmark: 'photopipe issue 8',
    mode: plan.mode,
    startedAt: new Date(started).toISOString(),
    totalSeconds: round(elapsedSec(), 1),
    machine: { ...machine, loadAverageAtEnd: loadavg().map((v) => round(v, 2)) },
    versions: r.versions,
    configuration: {
      plan,
      stackEnv,
      workerEnv,
      workerPrefetch: Object.fromEntries(STAGES.map((s) => [s, prefetchOf(s)])),
      queueType: 'quorum (default QUEUE_TYPE)',
      corpus: {
        dirs: CORPUS_DIRS,
        files: r.corpus.photos.map((p) => p.file),
        count: r.corpus.photos.length,
        totalBytes: r.corpus.totalBytes,
        meanMegapixels: round(r.corpus.megapixels / r.corpus.photos.length, 2),
      },
    },
    limit,
    seed,
    api,
    pipeline,
    resumable: r.resumable,
    ratios: {
      pipelineToLimit: vsLimit,
      pipelineToLimitFromMedians: vsLimitMedians,
      pipelineToSeed: vsSeed,
      pipelineToSeedFromMedians: vsSeedMedians,
      limitToSeed: ratio(limit?.best.photosPerSec, seedPps),
      scaling2to1: pipeline?.scalingRatio ?? Number.NaN,
      apiToRedisSet: Object.fromEntries((api?.sizes ?? []).map((s) => [s.label, s.ratio])),
    },
    goals,
  };
}

const RSS_BOUND = 1.25;

/** In-flight messages per worker process, as the workers compute it from the same environment. */
function prefetchOf(stage: StageName): number {
  // Only the stage settings are read: production's refusal of local defaults does not apply here.
  return loadConfig({ ...process.env, ...stackEnv, ...workerEnv, NODE_ENV: 'development' }).stage(stage).prefetch;
}

type Results = ReturnType<typeof buildResults>;

const MiB = (b: number | undefined) => (b === undefined ? 'n/a' : `${mb(b).toFixed(0)} MB`);

function render(r: Results): string {
  const out: string[] = [];
  const v = r.versions;
  const c = r.configuration;
  const p = c.plan;
  out.push(`== photopipe benchmark (${r.mode}) — ${r.startedAt}, ${r.totalSeconds} s ==`);
  out.push(
    `machine   ${r.machine.cores} cores, ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB, Linux ${r.machine.kernel}; ` +
      `load average ${r.machine.loadAverageAtStart.join(' ')} at start, ${r.machine.loadAverageAtEnd.join(' ')} at end`,
  );
  out.push(
    `versions  Node ${v.node}; sharp ${v.sharp} / libvips ${v.libvips} (sharp.concurrency ${v.sharpConcurrency}, UV_THREADPOOL_SIZE ${v.uvThreadpoolSize}); ` +
      `PostgreSQL ${v.postgres ?? '-'}; Redis ${v.redis ?? '-'}; RabbitMQ ${v.rabbitmq ?? '-'}; Python ${v.python ?? '-'} + PIL ${v.pil ?? '-'}; autocannon ${v.autocannon}`,
  );
  out.push(
    `corpus    ${c.corpus.count} JPEGs from ${c.corpus.dirs.join(', ')} (${(c.corpus.totalBytes / 1e6).toFixed(1)} MB, mean ${c.corpus.meanMegapixels} MP); ` +
      `pipeline uploads cycle through it with distinct bytes (a JPEG COM segment)`,
  );
  out.push(
    `config    limit: concurrency ${p.limit.concurrencies.join('/')} x ${p.limit.reps} reps of ${r.limit?.photosPerRep ?? '-'} photos, seed (${p.seed.procs} processes) after each rep | ` +
      `pipeline: N=${p.pipeline.n} (memory 2N=${p.pipeline.memoryN}), ${p.pipeline.reps} reps of 1 and 2 processes, limit + seed re-measured after each 1-process run, ` +
      `upload concurrency ${p.pipeline.uploadConcurrency}, warm-up ${p.pipeline.warmupPhotos}, steady ${p.pipeline.steadyDurationSec} s at ${p.pipeline.steadyFractionOfThroughput * 100}% of throughput | ` +
      `API: c=${p.api.concurrency}, ${p.api.durationSec} s x ${p.api.reps} reps per size`,
  );
  out.push(
    `          processes: API + local S3 (s3rver) + 1 worker process per role (${STAGES.join(', ')}); scaling adds a 2nd process to ${p.pipeline.scaledRoles.join(', ')}; ` +
      `prefetch ${Object.entries(c.workerPrefetch).map(([k, n]) => `${k}=${n}`).join(' ')}; ${c.queueType}; LOG_LEVEL warn (API, S3), info (workers: "stage done" lines)`,
  );
  out.push('');

  const rows: string[][] = [];
  const L = r.limit;
  const P = r.pipeline;
  const S = r.seed;
  const pairedL = P?.pairs.map((x) => fmt(x.limitPhotosPerSec)).join(', ');
  const pairedS = P?.pairs.map((x) => fmt(x.seedPhotosPerSec)).join(', ');
  if (L) {
    rows.push([
      `(1) physical limit: stage image work in one process, best concurrency ${L.best.concurrency}`,
      `${fmt(L.best.photosPerSec)} photos/s`,
      '1.00',
      `${fmt(L.best.cpuMsPerPhoto, 1)} CPU ms/photo; next to pipeline runs: ${pairedL ?? '-'}`,
    ]);
  }
  if (P) {
    rows.push([
      `(2) pipeline end to end, N=${P.memory.n}, 1 process/role (median of ${P.oneProcess.runs.length})`,
      `${fmt(P.oneProcess.medianPhotosPerSec)} photos/s`,
      `${fmt(r.ratios.pipelineToLimit)} of (1)`,
      `runs ${P.oneProcess.runs.map((x) => fmt(x)).join(', ')}; ratio of medians ${fmt(r.ratios.pipelineToLimitFromMedians)}`,
    ]);
    if (P.steady) {
      const s = P.steady;
      rows.push([`    latency upload -> complete at ${s.offeredPerSec}/s offered (${s.n} photos)`, `p50 ${fmt(s.latencyMs.p50, 0)} ms`, `p95 ${fmt(s.latencyMs.p95, 0)} ms`, `p99 ${fmt(s.latencyMs.p99, 0)} ms, max ${fmt(s.latencyMs.max, 0)} ms`]);
    }
  }
  if (S) {
    if (S.skipped) rows.push(['(3) seed baseline (Python + PIL): SKIPPED', S.reason, '', `install: ${S.install}`]);
    else {
      rows.push([
        `(3) seed baseline: bench/seed_worker.py, Python + PIL, ${S.procs} processes`,
        `${fmt(S.medianPhotosPerSec)} photos/s`,
        `(2)/(3) ${fmt(r.ratios.pipelineToSeed)}`,
        `(1)/(3) ${fmt(r.ratios.limitToSeed)}; runs ${S.reps.map((x) => fmt(x)).join(', ')}; next to pipeline runs: ${pairedS ?? '-'}`,
      ]);
    }
  }
  if (P?.large) {
    const g = P.large;
    rows.push([
      `(2b) pipeline on the ${g.files.length} photos of 3 MP and more (mean ${g.meanMegapixels} MP)`,
      `${fmt(g.pipelinePhotosPerSec)} photos/s`,
      `${fmt(g.toSeed)} of seed`,
      `${fmt(g.toLimit)} of the limit; measured right after it on the same photos: limit ${fmt(g.limitPhotosPerSec)}, seed ${fmt(g.seedPhotosPerSec)} photos/s`,
    ]);
  }
  for (const s of r.api?.sizes ?? []) {
    rows.push([
      `(4) upload API ${s.label}, c=${r.api?.concurrency}, workers stopped`,
      `${fmt(s.api.uploadsPerSec, 0)} uploads/s ${fmt(s.api.mbPerSec, 1)} MB/s`,
      `${fmt(s.ratio)} of SET`,
      `p50 ${fmt(s.api.p50Ms, 0)} ms p99 ${fmt(s.api.p99Ms, 0)} ms; SET loop ${fmt(s.ceiling.mbPerSec, 1)} MB/s p99 ${fmt(s.ceiling.p99Ms, 1)} ms; non-2xx ${s.api.non2xx}`,
    ]);
  }
  if (r.api) rows.push(['    API process peak RSS during (4)', MiB(r.api.apiPeakRssBytes), '', '']);
  for (const s of r.resumable?.sizes ?? []) {
    const plain = s.ways.find((w) => w.way === 'plain');
    const tus = s.ways.find((w) => w.way === 'tus, 1 PATCH');
    rows.push([
      `(7) resumable upload ${s.label} vs plain, one at a time`,
      `+${fmt(s.extraWallMs, 1)} ms wall, +${fmt(s.extraCpuMs, 1)} CPU ms`,
      `${fmt(s.wallRatio)}x wall, ${fmt(s.cpuRatio)}x CPU`,
      `plain ${fmt(plain?.wallMs, 1)} ms, tus ${fmt(tus?.wallMs, 1)} ms (median of ${r.resumable?.reps}); CPU = API + Redis, per upload`,
    ]);
  }
  if (P) {
    rows.push([
      `(5) pipeline, 2 processes per ${p.pipeline.scaledRoles.join('/')} (median of ${P.twoProcesses.runs.length})`,
      `${fmt(P.twoProcesses.medianPhotosPerSec)} photos/s`,
      `${fmt(P.scalingRatio)}x of 1 process`,
      `runs ${P.twoProcesses.runs.map((x) => fmt(x)).join(', ')}`,
    ]);
    const w = (rec: Record<string, number>) => Math.max(...STAGES.map((s2) => rec[`worker:${s2}`] ?? 0));
    rows.push([`(6) largest worker peak RSS, N=${P.memory.n} vs 2N=${P.memory.twoN}`, `${MiB(w(P.memory.peakRssN))} vs ${MiB(w(P.memory.peakRss2N))}`, fmt(ratio(w(P.memory.peakRss2N), w(P.memory.peakRssN))) + 'x', 'per process below']);
    rows.push([
      `(6) Redis used_memory peak above its baseline, N vs 2N`,
      `${MiB(P.memory.redisPeakDeltaN)} vs ${MiB(P.memory.redisPeakDelta2N)}`,
      fmt(ratio(P.memory.redisPeakDelta2N, P.memory.redisPeakDeltaN)) + 'x',
      'uploads wait in Redis until processed (Redis is shared with other users)',
    ]);
  }
  out.push(table(['measurement', 'value', 'ratio', 'detail'], rows));

  if (L) {
    out.push('', 'physical limit by concurrency (photos/s, median; CPU ms per photo)');
    out.push(table(['concurrency', 'photos/s', 'CPU ms/photo', 'reps'], L.byConcurrency.map((b) => [String(b.concurrency), fmt(b.medianPhotosPerSec), fmt(b.medianCpuMsPerPhoto, 1), b.reps.map((x) => fmt(x)).join(' ')])));
    if (Object.keys(L.perOperationCpuMs).length > 0) {
      out.push('  CPU ms per photo of each operation alone: ' + Object.entries(L.perOperationCpuMs).map(([k, v2]) => `${k} ${fmt(v2, 1)}`).join(', '));
    }
  }

  if (P) {
    const batches = [...(P.warmup ? [P.warmup] : []), ...P.batches.filter((b) => !b.label.startsWith('2proc')), ...(P.warmup2 ? [P.warmup2] : []), ...P.batches.filter((b) => b.label.startsWith('2proc'))];
    out.push('', 'pipeline runs');
    out.push(
      table(
        ['run', 'processes (ingest/exif/geocode/frame/thumbnail/upload)', 'N', 'seconds', 'photos/s', 'statuses', 'stuck', 'leftover blobs'],
        batches.map((b) => [
          b.label,
          STAGES.map((s2) => String(b.processesPerRole[s2] ?? 0)).join('/'),
          String(b.n),
          fmt(b.seconds, 1),
          fmt(b.photosPerSec),
          JSON.stringify(b.statuses),
          String(b.stuck?.count ?? 0),
          String(b.leftoverBlobKeys),
        ]),
      ),
    );
    const stuck = [...batches.map((b) => ({ label: b.label, s: b.stuck })), { label: 'steady', s: P.steady?.stuck ?? null }].filter((x) => x.s);
    for (const { label, s } of stuck) {
      out.push(
        `  WARNING run ${label}: ${s!.count} photo(s) never became final (no progress for ${s!.afterMs / 1000} s); its photos/s counts the finished ones. ` +
          `First: ${JSON.stringify(s!.photos.slice(0, 2))}; queues: ${JSON.stringify(s!.queues)}`,
      );
    }

    const ref = P.batches.find((b) => b.label === '1proc-rep1') ?? P.batches[0];
    if (ref) {
      out.push('', `per-stage handler time in run ${ref.label} (worker log "stage done" durationMs; busy = handler time / wall time = messages in a handler on average)`);
      out.push(
        table(
          ['stage', 'messages', 'p50 ms', 'p95 ms', 'mean ms', 'busy', 'prefetch'],
          STAGES.filter((s2) => ref.stages[s2]).map((s2) => {
            const st = ref.stages[s2]!;
            return [s2, String(st.count), fmt(st.p50Ms, 0), fmt(st.p95Ms, 0), fmt(st.meanMs, 1), fmt(st.busy, 2), String(c.workerPrefetch[s2])];
          }),
        ),
      );
      out.push('', `CPU time per photo by process in run ${ref.label} (/proc utime+stime; the in-process limit needs ${fmt(L?.best.cpuMsPerPhoto, 1)} ms)`);
      const cpuRows = Object.entries(ref.cpuMsPerPhoto)
        .filter(([k]) => k !== BENCH_CPU)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v2]) => [k, fmt(v2, 1), fmt((100 * v2) / ref.cpuMsPerPhotoSystem, 0) + '%']);
      cpuRows.push(['total (system)', fmt(ref.cpuMsPerPhotoSystem, 1), '100%']);
      cpuRows.push([`${BENCH_CPU}, not counted`, fmt(ref.cpuMsPerPhoto[BENCH_CPU], 1), '']);
      out.push(table(['process', 'CPU ms/photo', 'share'], cpuRows));
      if (L && Object.keys(L.perOperationCpuMs).length > 0) {
        const op = L.perOperationCpuMs;
        const image: Partial<Record<StageName, number>> = {
          ingest: (op['sha256 (ingest)'] ?? 0) + (op['header (ingest)'] ?? 0),
          exif: op['exif (exifr)'] ?? 0,
          geocode: 0,
          frame: op['frame (renderFramed)'] ?? 0,
          thumbnail: op['thumbnail (renderThumbnail)'] ?? 0,
          upload: 0,
        };
        out.push('', `worker CPU per message vs the same image work in-process (run ${ref.label}): the rest is the cost of being a pipeline stage`);
        out.push(
          table(
            ['role', 'messages', 'CPU ms/message', 'image work in-process ms', 'overhead ms/message'],
            STAGES.filter((s2) => ref.stages[s2]).map((s2) => {
              const perMsg = ((ref.cpuMsPerPhoto[`worker:${s2}`] ?? 0) * ref.n) / ref.stages[s2]!.count;
              return [s2, String(ref.stages[s2]!.count), fmt(perMsg, 1), fmt(image[s2], 1), fmt(perMsg - (image[s2] ?? 0), 1)];
            }),
          ),
        );
      }
      out.push(
        `  ${machine.cores} cores / ${fmt(ref.cpuMsPerPhotoSystem, 1)} CPU ms per photo = at most ${fmt((machine.cores * 1000) / ref.cpuMsPerPhotoSystem)} photos/s with every core busy; ` +
          `measured ${fmt(ref.photosPerSec)}. Shared services' CPU includes other users of them.`,
      );
    }

    out.push('', `(6) peak RSS per process (max over its processes), N=${P.memory.n} runs vs the 2N=${P.memory.twoN} run`);
    const names = [...new Set([...Object.keys(P.memory.peakRssN), ...Object.keys(P.memory.peakRss2N)])].sort();
    out.push(table(['process', `N=${P.memory.n}`, `2N=${P.memory.twoN}`, '2N/N'], names.map((k) => [k, MiB(P.memory.peakRssN[k]), MiB(P.memory.peakRss2N[k]), fmt(ratio(P.memory.peakRss2N[k], P.memory.peakRssN[k]))])));

    if (P.steady) {
      const s = P.steady;
      out.push('', `latency breakdown at ${s.offeredPerSec}/s offered (achieved ${fmt(s.achievedPerSec)}/s); mean ms per photo; wait = ready until a handler took it`);
      out.push(table(['step', 'wait ms', 'handler ms'], Object.entries(s.breakdownMs).map(([k, b]) => [k, fmt(b.waitMs, 0), fmt(b.serviceMs, 0)])));
      out.push(`  upload answered (202): p50 ${fmt(s.uploadAcceptMs.p50, 0)} ms, p99 ${fmt(s.uploadAcceptMs.p99, 0)} ms; statuses ${JSON.stringify(s.statuses)}`);
    }
    if (P.skippedRuns.length > 0) out.push('', `skipped to stay within the time budget: ${P.skippedRuns.join('; ')}`);
    if (P.retried.length > 0) out.push('', `run again because a shared service restarted under them: ${P.retried.join('; ')}`);
    const disturbed = [...P.batches.map((b) => ({ l: b.label, d: b.disturbed })), { l: 'steady', d: P.steady?.disturbed ?? null }].filter((x) => x.d);
    for (const x of disturbed) out.push(`  WARNING run ${x.l} was disturbed: ${x.d}; its figures are not trustworthy`);
    out.push('', `worker logs: ${P.logFiles}`);
  }

  if (r.api) {
    out.push('', 'CPU ms per upload by process during (4) (median over reps), next to the same per SET in the Redis SET loop');
    const procs = [...new Set(r.api.sizes.flatMap((s2) => [...Object.keys(s2.api.cpuMsPerUpload), ...Object.keys(s2.ceiling.cpuMsPerSet)]))];
    out.push(
      table(
        ['process', ...r.api.sizes.flatMap((s2) => [`API ${s2.label}`, `SET ${s2.label}`])],
        procs.map((k) => [k, ...r.api!.sizes.flatMap((s2) => [fmt(s2.api.cpuMsPerUpload[k], 2), fmt(s2.ceiling.cpuMsPerSet[k], 2)])]),
      ),
    );
    out.push('', `upload path, each step alone at c=${r.api.concurrency} from the bench process (what bounds the API)`);
    out.push(table(['step', 'ops/s', 'p50 ms', 'p99 ms'], r.api.components.map((x) => [x.name, fmt(x.opsPerSec, 0), fmt(x.p50Ms, 1), fmt(x.p99Ms, 1)])));
  }

  if (r.resumable) {
    out.push('', `(7) resumable (tus) vs plain upload, side by side, one upload at a time, workers stopped (wall: median of ${r.resumable.reps}; CPU ms per upload: mean)`);
    const groups = [...new Set(r.resumable.sizes.flatMap((s2) => s2.ways.flatMap((w) => Object.keys(w.cpuMs))))];
    out.push(
      table(
        ['size', 'way', 'requests', 'wall ms', ...groups.map((g) => `CPU ms ${g}`)],
        r.resumable.sizes.flatMap((s2) => s2.ways.map((w) => [s2.label, w.way, String(w.requests), fmt(w.wallMs, 1), ...groups.map((g) => fmt(w.cpuMs[g], 1))])),
      ),
    );
  }

  out.push('', 'goals');
  out.push(table(['goal', 'measured', 'status'], r.goals.map((g) => [g.goal, g.measured, g.status])));
  for (const g of r.goals) if (g.note) out.push(`  note (${g.goal}): ${g.note}`);
  return out.join('\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

function renderBatch(b: BatchBenchResult | null): string {
  if (!b) return '';
  const rows = [
    ['time to the first call', `${fmt(b.overlapped.firstCallSec, 1)} s`, `minBatchSize ${b.api.minBatchSize}`],
    ['total (overlapped)', `${fmt(b.overlapped.totalSec, 1)} s`, `${b.overlapped.calls} calls, maxBatchSize ${b.api.maxBatchSize}`],
    ['downloads alone', `${fmt(b.alone.downloadSec, 1)} s`, 'no pipeline worker, window = the batch'],
    ['pipeline alone (ingest, convert, store)', `${fmt(b.alone.pipelineSec, 1)} s`, 'downloads already in Redis, no dispatcher'],
    ['batch API alone', `${fmt(b.alone.apiSec, 1)} s`, `everything ready; ${b.api.baseMs} ms + ${b.api.perUrlMs} ms/URL per call`],
    ['overlap ratio: total / longest part alone', fmt(b.overlapRatio), `bound by: ${b.boundBy}`],
  ];
  const cpu = Object.entries(b.cpuSeconds).sort((x, y) => y[1] - x[1]);
  const used = cpu.reduce((n, [, v]) => n + v, 0);
  return (
    `\n\n(8) batch ingestion, ${b.n} URLs (${(b.imageMeanBytes / 1e3).toFixed(0)} KB JPEGs, one process per role)\n${table(['measurement', 'value', 'detail'], rows)}` +
    `\n  CPU during the overlapped run: ${fmt(used, 1)} s of ${fmt(b.coreSeconds, 1)} core-seconds (${cpu.map(([k, v]) => `${k} ${fmt(v, 1)}`).join(', ')})`
  );
}
