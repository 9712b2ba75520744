import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import * as tus from 'tus-js-client';

/**
 * tus resumable uploads across two API processes on real Redis. Each process is
 * test/helpers/tus-server.ts (the routes under test, a fake `Bearer tenant-x` auth, and a fake
 * accept that records the accepted bytes' SHA-256 in Redis).
 */

const MAX_BYTES = 5_000_000;
const LOCK_LEASE_MS = 1500;
const LOCK_DRAIN_MS = 500;
const PREFIX = `pp-test-tus-${process.pid}-${randomUUID().slice(0, 8)}:`;
// A real 3 MB phone HEIF (what the product requirement is about), from the shared fixture corpus
// found in an ancestor directory (a git worktree may sit deeper than ../shared); without the
// corpus, a HEIF header and random bytes of the same size (only the fake accept sees them).
const HEIF = ((): Buffer => {
  for (let dir = import.meta.dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'shared', 'fixtures', 'photos', 'heic', 'mobile', 'HMD_Nokia_8.3_5G.heif');
    if (existsSync(file)) return readFileSync(file);
  }
  const ftyp = Buffer.from('00000018667479706865696300000000686569636d696631', 'hex');
  return Buffer.concat([ftyp, randomBytes(3_019_841 - ftyp.length)]);
})();
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Anything whose first bytes are a JPEG's passes the API's sniff; only the fake accept sees the rest. */
const fakeJpeg = (size: number) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(size - 4)]);

interface Api {
  name: string;
  proc: ChildProcess;
  url: string;
  exited: Promise<void>;
}

async function startApi(name: string): Promise<Api> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'helpers', 'tus-server.ts')], {
    env: { ...process.env, KEY_PREFIX: PREFIX, NAME: name, MAX_BYTES: String(MAX_BYTES), LOCK_LEASE_MS: String(LOCK_LEASE_MS), LOCK_DRAIN_MS: String(LOCK_DRAIN_MS) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      const m = /^listening (\d+)$/.exec(line);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`API ${name} exited (${code}) before listening`)));
  });
  return { name, proc, url: `http://127.0.0.1:${port}`, exited };
}

async function stopApi(api: Api): Promise<void> {
  if (api.proc.exitCode !== null || api.proc.signalCode !== null) return;
  api.proc.kill('SIGTERM');
  await api.exited;
}

const auth = (tenant = 'tenant-a') => ({ authorization: `Bearer ${tenant}`, 'tus-resumable': '1.0.0' });
const metadata = (filename: string) => `filename ${Buffer.from(filename).toString('base64')},filetype ${Buffer.from('image/jpeg').toString('base64')}`;

async function create(base: string, length: number, opts: { tenant?: string; filename?: string; path?: string } = {}): Promise<string> {
  const res = await fetch(`${base}${opts.path ?? '/v1/uploads'}`, {
    method: 'POST',
    headers: { ...auth(opts.tenant), 'upload-length': String(length), 'upload-metadata': metadata(opts.filename ?? 'photo.jpg') },
  });
  assert.equal(res.status, 201, await res.text());
  const location = res.headers.get('location');
  assert.ok(location?.startsWith('/'), `relative Location, got ${location}`);
  return location ?? '';
}

async function patch(base: string, location: string, offset: number, body: Buffer, tenant = 'tenant-a'): Promise<Response> {
  return fetch(`${base}${location}`, {
    method: 'PATCH',
    headers: { ...auth(tenant), 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
    body,
  });
}

async function head(base: string, location: string, tenant = 'tenant-a'): Promise<Response> {
  return fetch(`${base}${location}`, { method: 'HEAD', headers: auth(tenant) });
}

/**
 * A PATCH whose client sends `sendBytes` of the body (Content-Length says more) and then goes
 * quiet, like a phone whose connection died without a FIN. Returns the request (to destroy later)
 * and the answer, if the server gives one.
 */
function stalledPatch(base: string, location: string, offset: number, body: Buffer, sendBytes: number) {
  let req!: ReturnType<typeof request>;
  const answer = new Promise<number | 'closed'>((resolve) => {
    req = request(`${base}${location}`, {
      method: 'PATCH',
      headers: { ...auth(), 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream', 'content-length': String(body.length) },
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve('closed'));
    req.on('close', () => resolve('closed'));
    req.write(body.subarray(0, sendBytes));
  });
  return { req, answer };
}

const uploadIdOf = (location: string) => location.split('/').pop() ?? '';

describe('tus resumable uploads on two API processes', { timeout: 120_000 }, () => {
  let redis: Redis;
  let a: Api;
  let b: Api;

  const keysOf = (location: string) => {
    const base = `${PREFIX}tus:{${uploadIdOf(location)}}`;
    return [`${base}:meta`, `${base}:data`, `${base}:finish`, `${base}:lock`];
  };
  const existing = async (location: string) => (await Promise.all(keysOf(location).map((k) => redis.exists(k)))).reduce((n, x) => n + x, 0);
  const uploadKeyCount = async () => (await redis.keys(`${PREFIX}tus:*`)).length;
  const acceptedFor = async (sha: string) => {
    const ids = await redis.lrange(`${PREFIX}accepted-by-sha:${sha}`, 0, -1);
    const records = await Promise.all(ids.map(async (id) => ({ id, ...(JSON.parse((await redis.get(`${PREFIX}accepted:${id}`)) ?? '{}') as { tenantId: string; sha256: string; filename: string; contentType: string; by: string }) })));
    return records;
  };

  before(async () => {
    redis = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: 2 });
    [a, b] = await Promise.all([startApi('A'), startApi('B')]);
  });

  after(async () => {
    await Promise.all([a, b].filter(Boolean).map(stopApi));
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });

  it('a 3 MB HEIF cut 3 times mid-PATCH resumes on the other process each time and is accepted once, intact (tus-js-client)', async () => {
    // A TCP proxy in front of both processes. New connections go to A until the first cut, then
    // to B until the second, and so on; each of the first three connections that carries more
    // than CUT_AT request bytes is cut there (both sockets destroyed mid-body).
    const CUT_AT = 700_000;
    let cuts = 0;
    const open = new Set<Socket>();
    const proxy: Server = createServer((client) => {
      const target = new URL(cuts % 2 === 0 ? a.url : b.url);
      const upstream = connect(Number(target.port), target.hostname);
      open.add(client).add(upstream);
      const cutThis = cuts < 3;
      let forwarded = 0;
      let cutting = false;
      client.on('data', (chunk: Buffer) => {
        if (cutThis && forwarded + chunk.length > CUT_AT) {
          if (cutting) return;
          cutting = true;
          cuts++;
          client.destroy();
          // The bytes before the cut reach the API (handed to the kernel before the close), so
          // how many it stores does not depend on the machine's load.
          upstream.write(chunk.subarray(0, CUT_AT - forwarded), () => upstream.destroy());
          return;
        }
        forwarded += chunk.length;
        upstream.write(chunk);
      });
      upstream.pipe(client);
      const drop = () => {
        client.destroy();
        if (!cutting) upstream.destroy();
        open.delete(client);
        open.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const address = proxy.address();
    const proxyUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;

    try {
      const started = Date.now();
      let upload!: tus.Upload;
      const lastResponse = await new Promise<tus.HttpResponse>((resolve, reject) => {
        upload = new tus.Upload(HEIF, {
          endpoint: `${proxyUrl}/v1/uploads`,
          headers: { authorization: 'Bearer tenant-a' },
          metadata: { filename: 'train.heif', filetype: 'image/heic' },
          retryDelays: [0, 100, 200, 400, 800],
          storeFingerprintForResuming: false,
          onSuccess: ({ lastResponse }) => resolve(lastResponse),
          onError: reject,
        });
        upload.start();
      });
      const elapsedMs = Date.now() - started;
      const location = new URL(upload.url ?? '').pathname;

      assert.equal(cuts, 3, 'the proxy cut three connections');
      const photoId = lastResponse.getHeader('x-photo-id');
      assert.ok(photoId, 'the final answer names the photo');
      assert.equal(lastResponse.getHeader('x-photo-status-url'), `http://photos.test/v1/photos/${photoId}`);

      const accepted = await acceptedFor(sha256(HEIF));
      assert.equal(accepted.length, 1, 'accepted exactly once');
      assert.equal(accepted[0]?.id, photoId);
      assert.equal(accepted[0]?.tenantId, 'tenant-a');
      assert.equal(accepted[0]?.filename, 'train.heif');
      assert.equal(accepted[0]?.contentType, 'image/heic');

      // The PATCHes as the processes saw them: alternating processes, each resuming after the
      // bytes the cut one had stored (so nothing restarted from zero).
      const patches = (await redis.lrange(`${PREFIX}requests`, 0, -1)).map((l) => l.split(' ')).filter(([, method, url]) => method === 'PATCH' && url === location);
      assert.equal(patches.length, 4, JSON.stringify(patches));
      assert.deepEqual(patches.map(([server]) => server), ['A', 'B', 'A', 'B']);
      const offsets = patches.map((p) => Number(p[3]));
      assert.equal(offsets[0], 0);
      for (let i = 1; i < offsets.length; i++) assert.ok((offsets[i] ?? 0) > (offsets[i - 1] ?? 0) + 600_000, `resumed after the stored bytes: ${offsets.join(', ')}`);

      // The bytes are freed once accepted; only the small record with the photo id stays.
      assert.equal(await redis.exists(keysOf(location)[1] ?? ''), 0, 'upload bytes freed');
      const again = await head(b.url, location);
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('x-photo-id'), photoId, 'a later HEAD still tells the photo id');
      console.log(`# 3 MB HEIF, 3 cuts, 4 PATCHes on 2 processes: ${elapsedMs} ms; PATCH offsets ${offsets.join(', ')}`);
    } finally {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  });

  it('creation-with-upload: a small upload finishes in its POST (tus-js-client)', async () => {
    const bytes = fakeJpeg(50_000);
    const lastResponse = await new Promise<tus.HttpResponse>((resolve, reject) => {
      new tus.Upload(bytes, {
        endpoint: `${b.url}/v1/uploads`,
        headers: { authorization: 'Bearer tenant-b' },
        metadata: { filename: 'small.jpg' },
        uploadDataDuringCreation: true,
        storeFingerprintForResuming: false,
        onSuccess: ({ lastResponse }) => resolve(lastResponse),
        onError: reject,
      }).start();
    });
    assert.equal(lastResponse.getStatus(), 201);
    const accepted = await acceptedFor(sha256(bytes));
    assert.equal(accepted.length, 1);
    assert.equal(lastResponse.getHeader('x-photo-id'), accepted[0]?.id);
    assert.equal(accepted[0]?.tenantId, 'tenant-b');
  });

  it('an abandoned upload expires and Redis frees its bytes', async () => {
    const location = await create(a.url, 1_000_000, { path: '/short/uploads' });
    const res = await patch(a.url, location, 0, fakeJpeg(300_000));
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('upload-offset'), '300000');
    const expires = Date.parse(res.headers.get('upload-expires') ?? '');
    assert.ok(expires > Date.now() && expires <= Date.now() + 2_500, `Upload-Expires within the 2 s TTL: ${res.headers.get('upload-expires')}`);
    const [meta, data] = keysOf(location);
    assert.ok((await redis.pttl(data ?? '')) > 0 && (await redis.pttl(data ?? '')) <= 2_000, 'the bytes carry the TTL');
    assert.ok((await redis.pttl(meta ?? '')) > 0);

    await new Promise((r) => setTimeout(r, 2_300));
    assert.equal(await existing(location), 0, 'every key of the upload is gone');
    assert.equal((await head(b.url, location)).status, 404);
  });

  it('an Upload-Length over the limit is refused at creation, before any byte is stored', async () => {
    const before = await uploadKeyCount();
    const res = await fetch(`${a.url}/v1/uploads`, { method: 'POST', headers: { ...auth(), 'upload-length': String(MAX_BYTES + 1) } });
    assert.equal(res.status, 413);
    // The same with the body in the POST (creation-with-upload).
    const withBody = await fetch(`${b.url}/v1/uploads`, {
      method: 'POST',
      headers: { ...auth(), 'upload-length': String(MAX_BYTES + 1), 'content-type': 'application/offset+octet-stream' },
      body: fakeJpeg(1000),
    });
    assert.equal(withBody.status, 413);
    // A deferred length would let a client outgrow the limit later: not offered.
    const deferred = await fetch(`${a.url}/v1/uploads`, { method: 'POST', headers: { ...auth(), 'upload-defer-length': '1' } });
    assert.equal(deferred.status, 501);
    assert.equal(await uploadKeyCount(), before, 'nothing stored');

    // Bytes beyond the declared length are refused too.
    const location = await create(a.url, 1000);
    assert.equal((await patch(b.url, location, 0, fakeJpeg(1001))).status, 413);
    await fetch(`${a.url}${location}`, { method: 'DELETE', headers: auth() });
  });

  it('a non-image is refused after its first bytes, and its bytes are freed', async () => {
    const location = await create(a.url, 2_000_000);
    // Send only the first 64 KiB of a 2 MB body: the answer must come without the rest.
    const zip = Buffer.concat([Buffer.from('PK\x03\x04'), randomBytes(2_000_000 - 4)]);
    const { req, answer } = stalledPatch(b.url, location, 0, zip, 65_536);
    assert.equal(await answer, 415);
    req.destroy();
    assert.equal(await existing(location), 0, 'refused upload deleted at once');
    assert.equal((await head(a.url, location)).status, 404);
  });

  it('another tenant cannot see, continue or delete an upload', async () => {
    const location = await create(a.url, 10_000);
    assert.equal((await patch(a.url, location, 0, fakeJpeg(10_000).subarray(0, 4_000))).status, 204);

    assert.equal((await head(b.url, location, 'tenant-b')).status, 404);
    assert.equal((await patch(b.url, location, 4_000, randomBytes(6_000), 'tenant-b')).status, 404);
    assert.equal((await fetch(`${b.url}${location}`, { method: 'DELETE', headers: auth('tenant-b') })).status, 404);
    assert.equal((await fetch(`${b.url}${location}`, { method: 'HEAD', headers: { 'tus-resumable': '1.0.0' } })).status, 401);

    const own = await head(b.url, location);
    assert.equal(own.status, 200);
    assert.equal(own.headers.get('upload-offset'), '4000', "the other tenant's attempts changed nothing");
    assert.equal((await fetch(`${b.url}${location}`, { method: 'DELETE', headers: auth() })).status, 204);
    assert.equal(await existing(location), 0, 'termination frees the keys');
  });

  it('a stalled PATCH on one process gives way to the client on the other; concurrent PATCHes never corrupt the offset', async () => {
    const bytes = fakeJpeg(1_500_000);
    const location = await create(a.url, bytes.length);

    // The phone's first PATCH stalls on A after 300 kB (its network went away without a FIN).
    const stalled = stalledPatch(a.url, location, 0, bytes, 300_000);
    await new Promise((r) => setTimeout(r, 300));

    // The phone, now on another network, lands on B and blindly retries from 0: B asks A to let
    // go of the lock, A stops and keeps what it received, and B finds the offset has moved.
    const t0 = Date.now();
    const blind = await patch(b.url, location, 0, bytes);
    const waitedMs = Date.now() - t0;
    assert.equal(blind.status, 409, 'offset conflict, nothing written');
    assert.ok(waitedMs < LOCK_DRAIN_MS + 1_500, `the stalled holder released within its drain time (${waitedMs} ms)`);
    // The stalled PATCH was ended by the server: answered with what it stored, or closed.
    assert.ok([204, 'closed'].includes(await stalled.answer));
    stalled.req.destroy();

    const h = await head(b.url, location);
    const offset = Number(h.headers.get('upload-offset'));
    assert.equal(offset, 300_000, 'every byte the stalled PATCH received counts');

    // Two PATCHes from that offset at once, one on each process: one writes, the other gets 409
    // (or writes nothing); the offset stays the length of what was stored in order.
    const rest = bytes.subarray(offset);
    const results = await Promise.all([patch(a.url, location, offset, rest), patch(b.url, location, offset, rest)]);
    const statuses = results.map((r) => r.status).sort();
    assert.ok(statuses.every((s) => s === 204 || s === 409), `statuses ${statuses.join(', ')}`);
    assert.ok(statuses.includes(204));
    const now = Number((await head(a.url, location)).headers.get('upload-offset'));
    if (now < bytes.length) assert.equal((await patch(a.url, location, now, bytes.subarray(now))).status, 204);
    const accepted = await acceptedFor(sha256(bytes));
    assert.equal(accepted.length, 1, 'the stored bytes are exactly the source, accepted once');
    console.log(`# stalled holder gave way after ${waitedMs} ms; concurrent PATCHes answered ${statuses.join(', ')}`);
  });

  it('a failed accept leaves the complete upload in place; the next HEAD hands it on once', async () => {
    const bytes = fakeJpeg(100_000);
    const location = await create(a.url, bytes.length, { filename: 'fail-once.jpg' });
    const final = await patch(a.url, location, 0, bytes);
    assert.equal(final.status, 503, 'the queue was away: no success without acceptance');
    assert.equal(await redis.exists(keysOf(location)[1] ?? ''), 1, 'bytes kept for the retry');

    const retried = await head(b.url, location);
    assert.equal(retried.status, 200);
    const photoId = retried.headers.get('x-photo-id');
    assert.ok(photoId);
    assert.equal((await head(a.url, location)).headers.get('x-photo-id'), photoId);
    const accepted = await acceptedFor(sha256(bytes));
    assert.deepEqual(accepted.map((r) => r.id), [photoId]);
  });

  it('a process that dies holding the lock blocks a resume for at most the lease', async () => {
    const bytes = fakeJpeg(1_200_000);
    const location = await create(b.url, bytes.length);
    const stalled = stalledPatch(a.url, location, 0, bytes, 600_000);
    await new Promise((r) => setTimeout(r, 300));
    a.proc.kill('SIGKILL');
    await a.exited;
    stalled.req.destroy();

    const t0 = Date.now();
    const h = await head(b.url, location);
    const waitedMs = Date.now() - t0;
    assert.equal(h.status, 200);
    assert.ok(waitedMs <= LOCK_LEASE_MS + 1_000, `waited ${waitedMs} ms for a dead holder's lock`);
    // Whole pieces appended before the crash count; the piece it still held in memory is lost.
    const offset = Number(h.headers.get('upload-offset'));
    assert.ok(offset > 0 && offset <= 600_000, `offset ${offset}`);
    assert.equal((await patch(b.url, location, offset, bytes.subarray(offset))).status, 204);
    assert.equal((await acceptedFor(sha256(bytes))).length, 1);
    console.log(`# dead holder: resumed after ${waitedMs} ms (lease ${LOCK_LEASE_MS} ms) at offset ${offset}`);
  });
});
