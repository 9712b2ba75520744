import { cpus } from 'node:os';
import sharp from 'sharp';
import { Stack, waitFor, type Proc } from '../test/helpers/stack.js';
import { distinctJpeg } from '../test/helpers/fixtures.js';
import { FakeOrigin } from '../test/helpers/fake-origin.js';
import { FakeBatchApi } from '../test/helpers/fake-batch-api.js';
import type { Corpus } from './lib/corpus.js';
import { cpuMs, pidsByComm } from './lib/proc.js';

/**
 * Batch ingestion (issue 17): an N-URL batch against a loopback origin and a fake batch API, with
 * one process per role (batch-download, ingest, convert, store, batch-dispatch). Measured:
 *   - overlapped: time to the first call and total time of the batch as the design runs it;
 *   - each part alone, on a batch of its own: downloads with no pipeline worker running (and a
 *     window as large as the batch), then the pipeline (ingest, convert, store) on those accepted
 *     downloads with no dispatcher, then the dispatcher handing over what is all ready;
 *   - overlap ratio = overlapped total / the longest part alone (1.0 = perfect overlap).
 * Images: the corpus photos as 1200-px JPEGs (about 0.2 MB each, every URL distinct bytes), so
 * that N downloads waiting in the shared Redis stay small.
 */
export interface BatchBenchResult {
  n: number;
  imageMeanBytes: number;
  api: { baseMs: number; perUrlMs: number; minBatchSize: number; maxBatchSize: number };
  overlapped: { firstCallSec: number; totalSec: number; calls: number };
  alone: { downloadSec: number; pipelineSec: number; apiSec: number };
  overlapRatio: number;
  boundBy: 'download' | 'pipeline' | 'batch API';
  /** CPU seconds per process during the overlapped run, and the machine's cores x wall time. */
  cpuSeconds: Record<string, number>;
  coreSeconds: number;
}

const MIN_BATCH = 100;
const MAX_BATCH = 250;

export async function runBatchBench(corpus: Corpus, opts: { n: number; log: (s: string) => void }): Promise<BatchBenchResult> {
  const { n, log } = opts;
  const origin = await new FakeOrigin().start();
  const api = await new FakeBatchApi({ baseMs: 100, perUrlMs: 2 }).start();
  const stack = await Stack.start({
    api: false,
    workers: 'none',
    env: { NODE_ENV: 'development', LOG_LEVEL: 'warn', FETCH_ALLOW_LOOPBACK: 'true', BATCH_POLL_INTERVAL_MS: '200', BATCH_SWEEP_INTERVAL_MS: '1000' },
  });
  const procs: Proc[] = [];
  try {
    await stack.startApi();
    const bases = await Promise.all(corpus.photos.map((p) => sharp(p.bytes).rotate().resize(1200, 1200, { fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 85 }).toBuffer()));
    const urlsFor = (label: string) => Array.from({ length: n }, (_, i) => origin.add(`${label}-${i}.jpg`, distinctJpeg(bases[i % bases.length]!, `${label}-${i}`)));
    const imageMeanBytes = Math.round(bases.reduce((s, b) => s + b.length, 0) / bases.length);
    const post = async (urls: string[], customer: string) => {
      const res = await fetch(`${stack.apiUrl}/v1/batches`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ urls, minBatchSize: MIN_BATCH, maxBatchSize: MAX_BATCH, batchApi: { endpoint: api.url, mode: 'poll', authHeader: { name: 'Authorization', value: customer } } }),
      });
      const body = (await res.json()) as { id: string };
      if (res.status !== 202) throw new Error(`POST /v1/batches answered ${res.status}: ${JSON.stringify(body)}`);
      return body.id;
    };
    const counts = async (id: string) => {
      const { rows } = await stack.db.query<{ downloaded: number; complete: number; open: number; status: string }>(
        `SELECT count(*) FILTER (WHERE i.downloaded_at IS NOT NULL)::int AS downloaded,
           count(*) FILTER (WHERE p.status IN ('complete', 'duplicate', 'failed'))::int AS complete,
           count(*) FILTER (WHERE i.status IN ('pending', 'queued', 'accepted', 'ready'))::int AS open,
           (SELECT status FROM batches WHERE id = $1) AS status
         FROM batch_items i LEFT JOIN photos p ON p.id = i.photo_id WHERE i.batch_id = $1`,
        [id],
      );
      return rows[0]!;
    };
    /** A service role's process, once its queue has a consumer (so that no start-up time is measured). */
    const start = async (name: string, role: string, queue: string, env: Record<string, string> = {}) => {
      const p = stack.spawnCli(`${name}-${Date.now()}`, ['worker', '--role', role], env);
      procs.push(p);
      const q = `${stack.config.AMQP_PREFIX}.${queue}`;
      await waitFor(`a consumer on ${q}`, async () => (await stack.queueStats(q)).consumerCount >= 1, 60_000, 100);
      return p;
    };
    const wake = () =>
      stack.amqp(async (ch) => {
        ch.publish(stack.config.AMQP_PREFIX, 'batch.dispatch', Buffer.from(JSON.stringify({ v: 1, tenantId: stack.tenant })));
        await new Promise((r) => setTimeout(r, 50));
      });
    const pipelineRoles = async () => [await stack.startWorkers(['ingest']), await stack.startWorkers(['convert']), await stack.startWorkers(['store'])];

    // Warm-up: every role once, a small batch through everything.
    let pipeline = await pipelineRoles();
    procs.push(...pipeline);
    const download = await start('download', 'batch-download', 'batch.download');
    let dispatch = await start('dispatch', 'batch-dispatch', 'batch.dispatch');
    const warm = await post(urlsFor('warm').slice(0, Math.min(50, n)), 'Bearer warm');
    await waitFor('the warm-up batch', async () => (await counts(warm)).status !== 'running', 120_000, 200);
    log(`  batch: warm-up done; ${n} URLs of ${(imageMeanBytes / 1e3).toFixed(0)} KB on average`);

    // Overlapped: the design as it runs, with the CPU each process spent.
    const named = () => [
      ...procs.filter((p) => p.running).map((p) => ({ name: p.name.replace(/-\d+$/, ''), pid: p.pid })),
      ...(stack.api ? [{ name: 'api', pid: stack.api.pid }] : []),
      ...(stack.s3Server ? [{ name: 's3rver', pid: stack.s3Server.pid }] : []),
      { name: 'bench (origin, fake API)', pid: process.pid },
      ...pidsByComm(['postgres', 'redis-server', 'beam.smp']).map((p) => ({ name: p.comm === 'beam.smp' ? 'rabbitmq' : p.comm === 'redis-server' ? 'redis' : 'postgres', pid: p.pid })),
    ];
    const cpuNow = () => {
      const out = new Map<number, { name: string; ms: number }>();
      for (const x of named()) out.set(x.pid, { name: x.name, ms: cpuMs(x.pid) ?? 0 });
      return out;
    };
    const cpuBefore = cpuNow();
    const t0 = Date.now();
    const id = await post(urlsFor('run'), 'Bearer run');
    await waitFor('the batch', async () => (await counts(id)).status !== 'running', 600_000, 100);
    const totalSec = (Date.now() - t0) / 1000;
    const cpuSeconds: Record<string, number> = {};
    for (const [pid, after] of cpuNow()) cpuSeconds[after.name] = (cpuSeconds[after.name] ?? 0) + Math.max(0, after.ms - (cpuBefore.get(pid)?.ms ?? 0)) / 1000;
    const jobs = api.jobsOf('Bearer run');
    const firstCallSec = (Math.min(...jobs.map((j) => j.createdAt)) - t0) / 1000;
    log(`  batch overlapped: first call after ${firstCallSec.toFixed(1)} s, all ${n} handed over in ${totalSec.toFixed(1)} s (${jobs.length} calls)`);

    // Alone, one part at a time, on a batch of its own.
    for (const p of [...pipeline, dispatch]) await p.stop();
    dispatch = await start('dispatch-window', 'batch-dispatch', 'batch.dispatch', { BATCH_WINDOW: String(n) });
    const t1 = Date.now();
    const alone = await post(urlsFor('alone'), 'Bearer alone');
    await waitFor('the downloads alone', async () => (await counts(alone)).downloaded === n, 600_000, 100);
    const downloadSec = (Date.now() - t1) / 1000;
    await dispatch.stop();
    await download.stop();
    log(`  batch alone: downloads ${downloadSec.toFixed(1)} s`);
    // convert and store first (idle), then ingest: timed from the moment ingest consumes (found
    // within 0.2 s, so this part alone is, if anything, slightly short).
    pipeline = [await stack.startWorkers(['convert']), await stack.startWorkers(['store'])];
    pipeline.push(await stack.startWorkers(['ingest']));
    procs.push(...pipeline);
    const t2 = Date.now();
    await waitFor('the pipeline alone', async () => (await counts(alone)).complete === n, 600_000, 100);
    const pipelineSec = (Date.now() - t2) / 1000;
    log(`  batch alone: pipeline (ingest, convert, store) ${pipelineSec.toFixed(1)} s`);
    dispatch = await start('dispatch-alone', 'batch-dispatch', 'batch.dispatch');
    const t3 = Date.now();
    await wake();
    await waitFor('the hand-over alone', async () => (await counts(alone)).status !== 'running', 600_000, 100);
    const apiSec = (Date.now() - t3) / 1000;
    log(`  batch alone: hand-over to the batch API ${apiSec.toFixed(1)} s (${api.jobsOf('Bearer alone').length} calls)`);

    const parts = { download: downloadSec, pipeline: pipelineSec, 'batch API': apiSec } as const;
    const [boundBy, longest] = (Object.entries(parts) as [BatchBenchResult['boundBy'], number][]).sort((a, b) => b[1] - a[1])[0]!;
    return {
      n,
      imageMeanBytes,
      api: { baseMs: 100, perUrlMs: 2, minBatchSize: MIN_BATCH, maxBatchSize: MAX_BATCH },
      overlapped: { firstCallSec, totalSec, calls: jobs.length },
      alone: { downloadSec, pipelineSec, apiSec },
      overlapRatio: totalSec / longest,
      boundBy,
      cpuSeconds,
      coreSeconds: totalSec * cpus().length,
    };
  } finally {
    await stack.stop();
    await api.close();
    await origin.close();
  }
}
