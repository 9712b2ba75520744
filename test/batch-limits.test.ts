import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { distinctJpeg } from './helpers/fixtures.js';
import { newTenant } from './helpers/fault-check.js';
import { FakeOrigin } from './helpers/fake-origin.js';
import { FakeBatchApi } from './helpers/fake-batch-api.js';
import { Stack, waitFor } from './helpers/stack.js';
import { loadCorpus } from '../bench/lib/corpus.js';
import { STAGES } from '../src/shared/config.js';

interface BatchView {
  id: string;
  status: string;
  counts: { total: number; downloaded: number; converted: number; handedOver: number; failed: number; cancelled: number };
  failures: { items: { line: number; url: string; code: string; reason: string }[] };
}

function status(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}
const mb = (b: number) => (b / 1024 / 1024).toFixed(0);

function p95(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)]!;
}

/**
 * Batch ingestion's edges: what POST /v1/batches refuses (naming the line), a 100,000-URL list and
 * a 100,000-URL body accepted with bounded API memory, cancelling, SSRF refusals with reasons
 * (private, metadata, IPv4 in IPv6, a name resolving privately, DNS rebinding), and live uploads
 * while a batch runs: their upload->complete p95 within 2x of the idle figure.
 */
describe('batch ingestion: limits, SSRF, fairness', () => {
  let stack: Stack;
  let origin: FakeOrigin;
  let api: FakeBatchApi;
  let customer: { tenant: string; key: string };
  const batchApi = () => ({ endpoint: api.url, mode: 'poll', authHeader: { name: 'Authorization', value: `Bearer ${customer.tenant}` } });

  const post = async (body: unknown) => {
    const res = await fetch(`${stack.apiUrl}/v1/batches`, { method: 'POST', headers: { authorization: `Bearer ${customer.key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as { id: string; total: number; error?: { code: string; message: string } } };
  };
  const get = async (id: string): Promise<BatchView> => {
    const res = await fetch(`${stack.apiUrl}/v1/batches/${id}?failuresLimit=50`, { headers: { authorization: `Bearer ${customer.key}` } });
    assert.equal(res.status, 200);
    return (await res.json()) as BatchView;
  };

  before(async () => {
    origin = await new FakeOrigin().start();
    api = await new FakeBatchApi({ baseMs: 100, perUrlMs: 2 }).start();
    stack = await Stack.start({
      api: false,
      workers: 'none',
      env: { FETCH_ALLOW_LOOPBACK: 'true', BATCH_SWEEP_INTERVAL_MS: '1000', BATCH_POLL_INTERVAL_MS: '200', BATCH_DOWNLOAD_MAX_ATTEMPTS: '2' },
    });
    stack.env.PUBLIC_BASE_URL = stack.apiUrl;
    await stack.startApi();
    customer = await newTenant(stack, 'limits');
  });

  after(async () => {
    await stack?.stop();
    await api?.close();
    await origin?.close();
  });

  it('refuses malformed requests with 400, naming the line of a bad URL', async () => {
    const ok = origin.url('/img/a.jpg');
    const cases: [unknown, RegExp][] = [
      [{ urls: [ok, ok, 'not a url'], batchApi: batchApi() }, /^line 3: not a valid URL$/],
      [{ urls: [ok, 'ftp://example.com/a.jpg'], batchApi: batchApi() }, /^line 2: scheme ftp: is not http or https$/],
      [{ urls: [ok, 'javascript:alert(1)'], batchApi: batchApi() }, /^line 2: scheme javascript: is not http or https$/],
      [{ urls: [ok], listUrl: ok, batchApi: batchApi() }, /either urls or listUrl/],
      [{ urls: [ok] }, /batchApi/],
      [{ urls: [ok], batchApi: { ...batchApi(), mode: 'carrier-pigeon' } }, /batchApi\.mode/],
      [{ urls: [ok], minBatchSize: 50, maxBatchSize: 10, batchApi: batchApi() }, /minBatchSize/],
      [{ urls: [ok], output: { format: 'bmp' }, batchApi: batchApi() }, /output\.format/],
      [{ urls: [ok], batchApi: { ...batchApi(), authHeader: { name: 'Idempotency-Key', value: 'x' } } }, /authHeader\.name/],
      [{ urls: [], batchApi: batchApi() }, /no URL/],
    ];
    for (const [body, message] of cases) {
      const r = await post(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.body.error!.message, message, JSON.stringify(r.body));
    }
    const list = origin.addList('bad.txt', Buffer.from(`${ok}\n\n${ok}\nhttp://\n`));
    const r = await post({ listUrl: list, batchApi: batchApi() });
    assert.equal(r.status, 400);
    assert.match(r.body.error!.message, /^line 4: not a valid URL$/);
    const { rows } = await stack.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM batches`);
    assert.equal(rows[0]!.n, 0, 'a refused batch leaves nothing behind');
  });

  it('refuses over 100,000 URLs, in a body or a list', async () => {
    const urls = Array.from({ length: 100_001 }, (_, i) => `http://h.example/${i}.jpg`);
    const r = await post({ urls, batchApi: batchApi() });
    assert.equal(r.status, 400);
    assert.equal(r.body.error!.code, 'too_many_urls');
    const list = origin.addList('too-long.txt', Buffer.from(urls.join('\n')));
    const l = await post({ listUrl: list, batchApi: batchApi() });
    assert.equal(l.status, 400);
    assert.match(l.body.error!.message, /^line 100001: more than 100000 URLs$/);
  });

  it('accepts a 100,000-URL list (streamed) and a 100,000-URL body with bounded API memory, and cancels them', async () => {
    const pid = stack.api!.pid;
    const lines = async function* () {
      for (let i = 0; i < 100_000; i += 1_000) yield Array.from({ length: 1_000 }, (_, k) => `https://images.example.com/customer/albums/2024/${i + k}/photo-${i + k}.jpg`).join('\n') + '\n';
    };
    const list = origin.addList('big.txt', lines);
    const figures: string[] = [];
    for (const [label, body] of [
      ['list', { listUrl: list, batchApi: batchApi() }],
      ['body', { urls: Array.from({ length: 100_000 }, (_, i) => `https://images.example.com/customer/albums/2024/${i}/photo-${i}.jpg`), batchApi: batchApi() }],
    ] as const) {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
      const before = status(pid, 'VmRSS');
      const t0 = Date.now();
      const r = await post(body);
      const ms = Date.now() - t0;
      assert.equal(r.status, 202, JSON.stringify(r.body));
      assert.equal(r.body.total, 100_000);
      const peak = status(pid, 'VmHWM');
      figures.push(`${label}: ${ms} ms, API RSS ${mb(before)} MB before, peak ${mb(peak)} MB (+${mb(peak - before)} MB)`);
      if (label === 'list') assert.ok(peak - before < 100 * 1024 * 1024, `a streamed list of 100,000 URLs grew the API by ${mb(peak - before)} MB`);
      const del = await fetch(`${stack.apiUrl}/v1/batches/${r.body.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${customer.key}` } });
      assert.equal(del.status, 202);
      const v = await get(r.body.id);
      assert.equal(v.status, 'cancelled');
      assert.equal(v.counts.cancelled, 100_000);
    }
    console.log(`# 100,000 URLs accepted: ${figures.join('; ')}`);
  });

  it('refuses private, metadata and rebinding addresses with a reason, at submission and at download', async () => {
    const endpoint = await post({ urls: [origin.url('/img/a.jpg')], batchApi: { ...batchApi(), endpoint: 'http://169.254.169.254/latest/' } });
    assert.equal(endpoint.status, 400);
    assert.match(endpoint.body.error!.message, /^batchApi\.endpoint: refused to fetch: 169\.254\.169\.254 is .*metadata/);
    const listPrivate = await post({ listUrl: 'http://10.0.0.1/list.txt', batchApi: batchApi() });
    assert.equal(listPrivate.status, 400);
    assert.match(listPrivate.body.error!.message, /^listUrl: refused to fetch: 10\.0\.0\.1 is .*private/);

    const port = new URL(origin.origin).port;
    const good = origin.add('ssrf-good.jpg', distinctJpeg(await sharp({ create: { width: 32, height: 32, channels: 3, background: '#123456' } }).jpeg().toBuffer(), 'ssrf'));
    origin.add('x.jpg', distinctJpeg(await sharp({ create: { width: 32, height: 32, channels: 3, background: '#654321' } }).jpeg().toBuffer(), 'x'));
    const urls = [
      good,
      'http://10.1.2.3/a.jpg',
      'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
      'http://[::ffff:10.0.0.7]/a.jpg',
      'http://100.64.0.1/a.jpg',
      `http://private.test:${port}/img/x.jpg`,
      `http://meta.test/`,
      `http://rebind.test:${port}/img/x.jpg`,
      origin.url(`/redirect-to/${encodeURIComponent('http://169.254.169.254/latest/')}`),
    ];
    const dns = JSON.stringify({ 'private.test': ['10.1.2.3'], 'meta.test': ['169.254.169.254'], 'rebind.test': ['93.184.216.34', '10.0.0.5'] });
    const download = stack.spawnCli('batch-download-ssrf', ['worker', '--role', 'batch-download'], { PHOTOPIPE_TEST_DNS: dns });
    const others = [await stack.startWorkers(['ingest', 'convert', 'store']), stack.spawnCli('batch-dispatch-ssrf', ['worker', '--role', 'batch-dispatch'])];
    const r = await post({ urls, minBatchSize: 1, batchApi: batchApi() });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const v = await waitFor('the SSRF batch to finish', async () => {
      const x = await get(r.body.id);
      return x.status !== 'running' ? x : null;
    }, 60_000, 300);
    assert.equal(v.status, 'complete_with_failures');
    assert.equal(v.counts.handedOver, 1);
    const reasons = new Map(v.failures.items.map((f) => [f.line, `${f.code}: ${f.reason}`]));
    assert.match(reasons.get(2)!, /^blocked_address: refused to fetch: 10\.1\.2\.3 is .*private/);
    assert.match(reasons.get(3)!, /^blocked_address: refused to fetch: 169\.254\.169\.254 is .*metadata/);
    assert.match(reasons.get(4)!, /^blocked_address: refused to fetch: \[::ffff:a00:7\] is .*private/);
    assert.match(reasons.get(5)!, /^blocked_address: .*carrier-grade NAT|^blocked_address: .*shared/i);
    assert.match(reasons.get(6)!, /^blocked_address: refused to fetch: private\.test:\d+ resolves to .*private/);
    assert.match(reasons.get(7)!, /^blocked_address: refused to fetch: meta\.test resolves to .*metadata/);
    assert.match(reasons.get(8)!, /^blocked_address: refused to fetch: rebind\.test(:\d+)? resolves to .*private/, 'the second answer, at connect time, is checked too');
    assert.match(reasons.get(9)!, /^blocked_address: refused to fetch: 169\.254\.169\.254 is .*metadata/, 'every redirect hop is checked');
    for (const reason of reasons.values()) assert.doesNotMatch(reason, /10\.0\.0\.5/, 'a resolved address is never shown');
    console.log(`# SSRF refusals: ${[...reasons.values()].join(' | ')}`);
    await download.stop();
    for (const p of others) await p.stop();
  });

  it('keeps live uploads\' upload->complete p95 within 2x of idle while a batch runs', async () => {
    const workers = [];
    for (const role of STAGES) workers.push(await stack.startWorkers([role]));
    const batchRoles = [stack.spawnCli('batch-download-p95', ['worker', '--role', 'batch-download']), stack.spawnCli('batch-dispatch-p95', ['worker', '--role', 'batch-dispatch'])];
    const corpus = loadCorpus();
    const upload = corpus.photos.find((p) => p.file === 'jpg/gps/DSCN0010.jpg') ?? corpus.photos[0]!;
    const latency = async (label: string, n: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = Date.now();
        const id = await stack.uploadOk(distinctJpeg(upload.bytes, `${label}-${i}-${stack.name}`));
        const done = await waitFor(`photo ${id}`, async () => {
          const { rows } = await stack.db.query<{ status: string; completed_at: Date | null }>(`SELECT status, completed_at FROM photos WHERE id = $1`, [id]);
          return rows[0]?.status === 'complete' ? rows[0].completed_at : null;
        }, 60_000, 20);
        out.push(done!.getTime() - t0);
      }
      return out;
    };
    await latency('warm', 5);
    const idle = await latency('idle', 20);

    const urls = Array.from({ length: 800 }, (_, i) => origin.add(`p95-${i}.jpg`, distinctJpeg(corpus.photos[i % corpus.photos.length]!.bytes, `p95-${i}`)));
    const r = await post({ urls, minBatchSize: 100, maxBatchSize: 200, output: { format: 'webp', maxSize: 1600, quality: 80 }, batchApi: batchApi() });
    assert.equal(r.status, 202);
    await waitFor('the batch to be under way', async () => (await get(r.body.id)).counts.converted >= 20, 60_000, 200);
    const convertedBefore = (await get(r.body.id)).counts.converted;
    const during = await latency('during', 20);
    const at = await get(r.body.id);
    assert.equal(at.status, 'running', 'the batch was still running when the last upload completed');
    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b).join(' ');
    const line =
      `# upload->complete p95: idle ${p95(idle)} ms, during a batch ${p95(during)} ms (idle: ${sorted(idle)}; during: ${sorted(during)}); ` +
      `the batch had ${at.counts.downloaded} downloaded, ${at.counts.converted} converted, ${at.counts.handedOver} handed over of 800 when the last upload completed, ` +
      `${(await get(r.body.id)).counts.converted - convertedBefore} converted while the uploads ran`;
    console.log(line);
    assert.ok(p95(during) <= 2 * p95(idle), line);
    await fetch(`${stack.apiUrl}/v1/batches/${r.body.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${customer.key}` } });
    for (const p of [...batchRoles, ...workers]) await p.stop();
  });
});
