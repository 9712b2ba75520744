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
});
