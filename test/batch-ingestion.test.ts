import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { newTenant } from './helpers/fault-check.js';
import { FakeOrigin } from './helpers/fake-origin.js';
import { FakeBatchApi } from './helpers/fake-batch-api.js';
import { Stack, waitFor, type Proc } from './helpers/stack.js';

interface BatchView {
  id: string;
  status: string;
  counts: { total: number; downloaded: number; converted: number; stored: number; handedOver: number; failed: number; cancelled: number; waiting: number };
  calls: { total: number; items: { sequence: number; size: number; status: string; startedAt: string; finishedAt: string | null }[] };
  failures: { items: { line: number; url: string; stage: string; code: string; reason: string }[]; nextCursor: string | null };
}

/** A small distinct JPEG per seed (64x48), so that no two URLs share content unless a test wants it. */
async function tinyJpeg(seed: number): Promise<Buffer> {
  const c = { r: seed % 256, g: (seed * 7) % 256, b: (seed * 13) % 256 };
  const img = await sharp({ create: { width: 64, height: 48, channels: 3, background: c } }).jpeg({ quality: 80 }).toBuffer();
  return distinctJpeg(img, `tiny-${seed}`);
}

/**
 * Batch ingestion end to end on the real services: two customers' 2,000-URL batches at once, one
 * polling its batch API and one called back by it, against a fake origin (good images, 404s, 410s,
 * timeouts, non-images, truncated JPEGs, 503s that clear, redirects, a redirect to a private
 * address, duplicates) and a fake batch API that fails the test if two calls of one customer
 * overlap; kill -9 of a download worker, a pipeline worker (convert) and the dispatcher mid-batch.
 */
describe('batch ingestion', () => {
  let stack: Stack;
  let origin: FakeOrigin;
  let api: FakeBatchApi;
  const procs: Record<string, Proc> = {};

  const get = async (key: string, id: string, query = ''): Promise<BatchView> => {
    const res = await fetch(`${stack.apiUrl}/v1/batches/${id}${query}`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200);
    return (await res.json()) as BatchView;
  };
  const post = async (key: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${stack.apiUrl}/v1/batches`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as { id: string; error?: { code: string; message: string } } };
  };
  const waitDone = (key: string, id: string, timeoutMs: number) =>
    waitFor(`batch ${id} to finish`, async () => {
      const v = await get(key, id);
      return v.status !== 'running' ? v : null;
    }, timeoutMs, 500);

  before(async () => {
    origin = await new FakeOrigin().start();
    api = await new FakeBatchApi({ baseMs: 150, perUrlMs: 2 }).start();
    stack = await Stack.start({
      api: false,
      workers: 'none',
      env: {
        FETCH_ALLOW_LOOPBACK: 'true',
        BATCH_SWEEP_INTERVAL_MS: '1000',
        BATCH_POLL_INTERVAL_MS: '200',
        BATCH_DOWNLOAD_TIMEOUT_MS: '1500',
        BATCH_DOWNLOAD_MAX_ATTEMPTS: '3',
        BATCH_API_TIMEOUT_MS: '5000',
        LOG_LEVEL: 'info',
      },
    });
    stack.env.PUBLIC_BASE_URL = stack.apiUrl;
    await stack.startApi();
    procs.ingest = await stack.startWorkers(['ingest']);
    procs.convert = await stack.startWorkers(['convert']);
    procs.store = await stack.startWorkers(['store']);
    procs.download = stack.spawnCli('batch-download-1', ['worker', '--role', 'batch-download']);
    procs.dispatch = stack.spawnCli('batch-dispatch-1', ['worker', '--role', 'batch-dispatch']);
  });

  after(async () => {
    await stack?.stop();
    await api?.close();
    await origin?.close();
  });

  it('hands a small batch over in one call (poll mode), every URL once, fetchable from its public URL', async () => {
    const c = await newTenant(stack, 'small');
    const urls: string[] = [];
    for (let i = 0; i < 20; i++) urls.push(origin.add(`small-${i}.jpg`, await tinyJpeg(10_000 + i)));
    const res = await post(c.key, { urls, minBatchSize: 50, batchApi: { endpoint: api.url, mode: 'poll', authHeader: { name: 'Authorization', value: `Bearer ${c.tenant}` } } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const view = await waitDone(c.key, res.body.id, 60_000);
    assert.equal(view.status, 'complete', JSON.stringify(view));
    assert.equal(view.counts.handedOver, 20);
    assert.equal(view.calls.total, 1, 'fewer images than minBatchSize: one call once nothing more can come');
    const handed = api.handed(`Bearer ${c.tenant}`);
    assert.equal(handed.length, 20);
    assert.equal(new Set(handed).size, 20);
    const img = await fetch(handed[0]!);
    assert.equal(img.status, 200);
    assert.equal(img.headers.get('content-type'), 'image/jpeg');
    const meta = await sharp(Buffer.from(await img.arrayBuffer())).metadata();
    assert.equal(meta.width, 64);
  });

  it('hands 2,000 URLs of each of two customers (poll and webhook) over exactly once, never two calls at once, through kill -9 of a download worker, a convert worker and the dispatcher', async () => {
    const fixtures = ['jpg/gps/DSCN0010.jpg', 'jpg/Canon_40D_photoshop_import.jpg', 'jpg/Pentax_K10D.jpg', 'jpg/Nikon_COOLPIX_P1.jpg'].map((f) => photo(f));
    const truncated = fixtures[0]!.subarray(0, Math.floor(fixtures[0]!.length / 3));
    const N = 2_000;
    const X = 200;
    const customers = [await newTenant(stack, 'poll'), await newTenant(stack, 'hook')];
    const expected = new Map<string, Map<number, string>>(); // customer -> line -> expected failure code
    const dupOf = new Map<string, [number, number][]>();
    const bodies: Record<string, unknown>[] = [];
    for (const [ci, c] of customers.entries()) {
      const fails = new Map<number, string>();
      const dups: [number, number][] = [];
      const urls: string[] = [];
      for (let i = 0; i < N; i++) {
        const name = `${c.tenant}-${i}.jpg`;
        const line = i + 1;
        const r = i % 200;
        if (r === 5) {
          urls.push(origin.url(`/missing/${name}`));
          fails.set(line, 'http_status');
        } else if (i % 400 === 7) {
          urls.push(origin.url(`/gone/${name}`));
          fails.set(line, 'http_status');
        } else if (r === 11) {
          urls.push(origin.add(name, Buffer.from(`<html>not an image ${i}</html>`)));
          fails.set(line, 'unsupported_media_type');
        } else if (i % 400 === 13) {
          urls.push(origin.add(name, distinctJpeg(truncated, name)));
          fails.set(line, 'corrupt_image');
        } else if (i % 700 === 17) {
          origin.add(name, await tinyJpeg(ci * 100_000 + i));
          urls.push(origin.url(`/slow/4000/${name}`));
          fails.set(line, 'timeout');
        } else if (r === 19) {
          origin.add(name, await tinyJpeg(ci * 100_000 + i));
          urls.push(origin.url(`/flaky/2/${name}`));
        } else if (r === 23) {
          origin.add(name, await tinyJpeg(ci * 100_000 + i));
          urls.push(origin.url(`/redirect/2/${name}`));
        } else if (i % 1000 === 29) {
          urls.push(origin.url(`/redirect-to/${encodeURIComponent('http://10.0.0.1/inside.jpg')}`));
          fails.set(line, 'blocked_address');
        } else if (r === 31) {
          // The same bytes as the line before: converted once, its URL reused.
          urls.push(origin.add(name, (await fetch(urls[i - 1]!).then(async (x) => Buffer.from(await x.arrayBuffer())))));
          dups.push([i, i + 1]);
        } else if (r === 37) {
          urls.push(origin.add(name, distinctJpeg(fixtures[(i / 200) % fixtures.length | 0]!, name)));
        } else {
          urls.push(origin.add(name, await tinyJpeg(ci * 100_000 + i)));
        }
      }
      expected.set(c.tenant, fails);
      dupOf.set(c.tenant, dups);
      bodies.push({
        urls,
        minBatchSize: X,
        maxBatchSize: 400,
        output: { format: 'jpeg', maxSize: 512, quality: 80 },
        batchApi: { endpoint: api.url, mode: ci === 0 ? 'poll' : 'webhook', authHeader: { name: 'Authorization', value: `Bearer ${c.tenant}` } },
      });
    }
    const started = Date.now();
    const ids = await Promise.all(customers.map(async (c, ci) => {
      const r = await post(c.key, bodies[ci], { 'idempotency-key': `big-${c.tenant}` });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      // The same request again (a client retrying) gives the same batch.
      const again = await post(c.key, bodies[ci], { 'idempotency-key': `big-${c.tenant}` });
      assert.equal(again.status, 200);
      assert.equal(again.body.id, r.body.id);
      return r.body.id;
    }));
    const handedSoFar = async () => (await Promise.all(customers.map((c, ci) => get(c.key, ids[ci]!)))).reduce((n, v) => n + v.counts.handedOver, 0);

    // kill -9 mid-batch: the download worker once the first calls are made, then convert, then the dispatcher.
    await waitFor('the first calls', async () => (await handedSoFar()) >= X, 180_000, 500);
    procs.download!.kill('SIGKILL');
    await procs.download!.exited;
    procs.download = stack.spawnCli('batch-download-2', ['worker', '--role', 'batch-download']);
    await new Promise((r) => setTimeout(r, 3_000));
    procs.convert!.kill('SIGKILL');
    await procs.convert!.exited;
    procs.convert = await stack.startWorkers(['convert']);
    await waitFor('more calls', async () => (await handedSoFar()) >= 1_600, 240_000, 500);
    // The dispatcher dies mid-call: the customer has the start (its answer is held back), the call
    // row is still "starting". Its successor must re-send that start, never open a second call.
    api.startAnswerDelayMs = 3_000;
    await waitFor('a start on its way to the customer', async () => {
      const { rows } = await stack.db.query(`SELECT 1 FROM batch_calls WHERE status = 'starting' AND batch_id = ANY($1::uuid[])`, [ids]);
      return rows.length > 0;
    }, 60_000, 20);
    await new Promise((r) => setTimeout(r, 500));
    procs.dispatch!.kill('SIGKILL');
    await procs.dispatch!.exited;
    api.startAnswerDelayMs = 0;
    await new Promise((r) => setTimeout(r, 1_000));
    // Two dispatchers from now on: one works, the other stands by; either may take over.
    procs.dispatch = stack.spawnCli('batch-dispatch-2', ['worker', '--role', 'batch-dispatch']);
    procs.dispatch2 = stack.spawnCli('batch-dispatch-3', ['worker', '--role', 'batch-dispatch']);

    const views = await Promise.all(customers.map((c, ci) => waitDone(c.key, ids[ci]!, 360_000)));
    const seconds = (Date.now() - started) / 1000;
    assert.deepEqual(api.violations, [], 'no two calls of one customer overlapped, no key re-sent with other URLs');
    for (const [ci, c] of customers.entries()) {
      const v = views[ci]!;
      const fails = expected.get(c.tenant)!;
      const good = N - fails.size;
      assert.equal(v.status, 'complete_with_failures', JSON.stringify(v.counts));
      assert.equal(v.counts.handedOver, good, JSON.stringify(v.counts));
      assert.equal(v.counts.failed, fails.size, JSON.stringify(v.counts));
      assert.equal(v.counts.total, N);
      // Exactly once: what the customer received is what the items say they handed over, URL for URL.
      const { rows } = await stack.db.query<{ output_url: string; call_seq: number }>(`SELECT output_url, call_seq FROM batch_items WHERE batch_id = $1 AND status = 'handed'`, [ids[ci]]);
      const received = api.handed(`Bearer ${c.tenant}`).sort();
      assert.equal(received.length, good, 'every good URL handed over once, none twice');
      assert.deepEqual(received, rows.map((r) => r.output_url).sort());
      const jobs = api.jobsOf(`Bearer ${c.tenant}`).sort((a, b) => a.sequence - b.sequence);
      assert.ok(jobs[0]!.urls.length >= X, `the first call starts after ${X} images (it had ${jobs[0]!.urls.length})`);
      assert.ok(jobs.every((j) => j.urls.length <= 400), 'no call above maxBatchSize');
      assert.deepEqual(jobs.map((j) => j.sequence), jobs.map((_, k) => k + 1), 'calls numbered without gaps');
      assert.equal(v.calls.total, jobs.length);
      assert.ok(v.calls.items.every((k) => k.status === 'succeeded'), JSON.stringify(v.calls.items.filter((k) => k.status !== 'succeeded')));
      // Failures with reasons, paged.
      const listed: BatchView['failures']['items'] = [];
      let cursor: string | null = '';
      while (cursor !== null) {
        const page: BatchView = await get(c.key, ids[ci]!, `?failuresLimit=10${cursor ? `&failuresCursor=${cursor}` : ''}`);
        listed.push(...page.failures.items);
        cursor = page.failures.nextCursor;
      }
      assert.deepEqual(new Map(listed.map((f) => [f.line, f.code])), fails);
      for (const f of listed) assert.ok(f.reason.length > 5 && !/10\.0\.0\.1:|ECONN|at \//.test(f.reason) || f.code === 'blocked_address', `${f.line}: ${f.reason}`);
      assert.match(listed.find((f) => f.code === 'blocked_address')!.reason, /private/);
      // Duplicates: one conversion, one stored URL for both lines.
      for (const [a, b] of dupOf.get(c.tenant)!) {
        const r = await stack.db.query<{ seq: number; output_url: string; status: string }>(
          `SELECT i.seq, i.output_url, p.status FROM batch_items i JOIN photos p ON p.id = i.photo_id WHERE i.batch_id = $1 AND i.seq = ANY($2::int[]) ORDER BY i.seq`,
          [ids[ci], [a, b]],
        );
        assert.equal(r.rows[0]!.output_url, r.rows[1]!.output_url, `lines ${a} and ${b}: the same stored URL`);
        assert.deepEqual(r.rows.map((x) => x.status).sort(), ['complete', 'duplicate']);
      }
      // Fetchable from their public URLs.
      for (const url of received.filter((_, k) => k % 97 === 0)) {
        const res = await fetch(url);
        assert.equal(res.status, 200, url);
        assert.equal(res.headers.get('content-type'), 'image/jpeg');
      }
      console.log(`# customer ${ci === 0 ? 'poll' : 'webhook'}: ${good} handed over in ${jobs.length} calls (first ${jobs[0]!.urls.length}, re-sent starts ${jobs.filter((j) => j.starts > 1).length}), ${fails.size} failures`);
    }
    assert.ok(api.jobs.some((j) => j.starts >= 2), 'the start cut off by the kill was re-sent with its Idempotency-Key');
    // 404 and 410 are not retried (a kill -9 may repeat one request).
    const notFound = [...origin.hits.entries()].filter(([p]) => p.startsWith('/missing/') || p.startsWith('/gone/'));
    assert.ok(notFound.reduce((n, [, h]) => n + h, 0) <= notFound.length + 4, 'no retries for 404/410');
    assert.ok([...origin.hits.entries()].filter(([p]) => p.startsWith('/flaky/')).every(([, h]) => h >= 3), '503s retried until they clear');
    console.log(`# two 2,000-URL batches in ${seconds.toFixed(1)} s`);
  });
});
