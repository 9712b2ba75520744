import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { createServer, connect, type Server, type Socket } from 'node:net';
import * as tus from 'tus-js-client';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { newTenant } from './helpers/fault-check.js';
import { Stack, waitFor, type Proc } from './helpers/stack.js';
import { WORKER_ROLES } from '../src/workers/roles.js';

/**
 * tus resumable uploads (POST/HEAD/PATCH /v1/uploads) on two real API processes of one stack
 * (same Postgres, Redis, RabbitMQ and S3; `Stack.startAnotherApi`), with workers, so that an
 * upload that moved between processes ends as a photo the pipeline completes.
 */

const MAX_BYTES = 5_000_000;
const LOCK_LEASE_MS = 1_500;
/** @tus/server's default: a PATCH asked to give up its lock stops within this. */
const LOCK_DRAIN_MS = 3_000;
// A real 3 MB phone HEIF (what the product requirement is about).
const HEIF = photo('heic/mobile/HMD_Nokia_8.3_5G.heif');
const JPEG = photo('jpg/gps/DSCN0010.jpg');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** A JPEG head and random bytes: the API sniffs only the head; the pipeline would fail it later (never waited for here). */
const fakeJpeg = (size: number) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(size - 4)]);

interface Api {
  proc: Proc;
  url: string;
}

/** One request as the proxy saw it go by: which process got it, its method, path and Upload-Offset. */
interface Seen {
  target: 'A' | 'B';
  method: string;
  path: string;
  offset: number | null;
}

/**
 * Follows the HTTP/1.1 requests on one proxied connection (heads and Content-Length bodies), so the
 * test knows which API process served which tus request without asking the processes.
 */
function requestTracker(target: 'A' | 'B', seen: Seen[]): (chunk: Buffer) => void {
  let buffer = Buffer.alloc(0);
  let bodyLeft = 0;
  return (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (bodyLeft > 0) {
        const skip = Math.min(bodyLeft, buffer.length);
        bodyLeft -= skip;
        buffer = buffer.subarray(skip);
        if (bodyLeft > 0) return;
      }
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = buffer.subarray(0, end).toString('latin1').split('\r\n');
      buffer = buffer.subarray(end + 4);
      const [method = '', path = ''] = (lines[0] ?? '').split(' ');
      const header = (name: string) => lines.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
      const offset = header('upload-offset');
      seen.push({ target, method, path, offset: offset === undefined ? null : Number(offset) });
      bodyLeft = Number(header('content-length') ?? 0);
    }
  };
}

describe('tus resumable uploads on two API processes', { timeout: 300_000 }, () => {
  let stack: Stack;
  let a: Api;
  let b: Api;

  const auth = (key = stack.apiKey) => ({ authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0' });
  const prefix = () => stack.config.REDIS_KEY_PREFIX;
  const keysOf = (location: string) => {
    const base = `${prefix()}tus:{${location.split('/').pop() ?? ''}}`;
    return [`${base}:meta`, `${base}:data`, `${base}:finish`, `${base}:lock`];
  };
  const existing = async (location: string) => (await Promise.all(keysOf(location).map((k) => stack.redis.exists(k)))).reduce((n, x) => n + x, 0);
  const uploadKeyCount = async () => (await stack.redis.keys(`${prefix()}tus:*`)).length;
  const photosNamed = async (name: string) => (await stack.db.query(`SELECT id, sha256 FROM photos WHERE original_name = $1`, [name])).rows as { id: string; sha256: string | null }[];
  const photosWith = async (sha: string) => (await stack.db.query(`SELECT id, status, original_name, tenant_id FROM photos WHERE sha256 = $1`, [sha])).rows as { id: string; status: string; original_name: string; tenant_id: string }[];

  async function create(base: string, length: number, opts: { key?: string; filename?: string; headers?: Record<string, string> } = {}): Promise<string> {
    const res = await fetch(`${base}/v1/uploads`, {
      method: 'POST',
      headers: { ...auth(opts.key), 'upload-length': String(length), 'upload-metadata': `filename ${Buffer.from(opts.filename ?? 'photo.jpg').toString('base64')}`, ...opts.headers },
    });
    assert.equal(res.status, 201, await res.text());
    const location = res.headers.get('location');
    assert.ok(location?.startsWith('/v1/uploads/'), `relative Location, got ${location}`);
    return location ?? '';
  }

  const patch = (base: string, location: string, offset: number, body: Buffer, key?: string) =>
    fetch(`${base}${location}`, { method: 'PATCH', headers: { ...auth(key), 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' }, body });
  const head = (base: string, location: string, key?: string) => fetch(`${base}${location}`, { method: 'HEAD', headers: auth(key) });

  /** A PATCH whose client sends `sendBytes` of the body and then goes quiet, like a phone whose network died without a FIN. */
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

  before(async () => {
    stack = await Stack.start({
      workers: 'one',
      env: { UPLOAD_MAX_BYTES: String(MAX_BYTES), RESUMABLE_LOCK_LEASE_MS: String(LOCK_LEASE_MS), RESUMABLE_UPLOAD_TTL_SECONDS: '600' },
    });
    a = { proc: stack.api as Proc, url: stack.apiUrl };
    b = await stack.startAnotherApi();
  });

  after(async () => {
    await stack?.stop();
  });

  it('a 3 MB HEIF cut 3 times mid-PATCH resumes on the other process each time and ends complete with the same SHA-256 (tus-js-client)', async () => {
    // A TCP proxy in front of both processes. New connections go to A until the first cut, then
    // to B until the second, and so on; each of the first three connections that carries more
    // than CUT_AT request bytes is cut there (both sockets destroyed mid-body).
    const CUT_AT = 700_000;
    let cuts = 0;
    const seen: Seen[] = [];
    const open = new Set<Socket>();
    const proxy: Server = createServer((client) => {
      const name = cuts % 2 === 0 ? 'A' : 'B';
      const target = new URL(name === 'A' ? a.url : b.url);
      const upstream = connect(Number(target.port), target.hostname);
      const track = requestTracker(name, seen);
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
          // The bytes before the cut reach the API (handed to the kernel before the close).
          const part = chunk.subarray(0, CUT_AT - forwarded);
          track(part);
          upstream.write(part, () => upstream.destroy());
          return;
        }
        forwarded += chunk.length;
        track(chunk);
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
          headers: { authorization: `Bearer ${stack.apiKey}` },
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
      assert.equal(lastResponse.getHeader('x-photo-status-url'), `/v1/photos/${photoId}`);

      // The PATCHes as the processes got them: alternating processes, each resuming after the
      // bytes the cut one had stored (nothing restarted from zero).
      const patches = seen.filter((s) => s.method === 'PATCH' && s.path === location);
      assert.deepEqual(patches.map((p) => p.target), ['A', 'B', 'A', 'B'], JSON.stringify(seen));
      const offsets = patches.map((p) => p.offset ?? -1);
      assert.equal(offsets[0], 0);
      for (let i = 1; i < offsets.length; i++) assert.ok((offsets[i] ?? 0) > (offsets[i - 1] ?? 0) + 600_000, `resumed after the stored bytes: ${offsets.join(', ')}`);

      // One photo, the pipeline's hash of what it received is the file's, and it completes.
      assert.equal(await stack.waitFinal(photoId, 90_000), 'complete');
      const view = await stack.getPhoto(photoId);
      assert.equal(view.body.sha256, sha256(HEIF), 'same SHA-256 as the file');
      assert.equal(view.body.file?.originalName, 'train.heif');
      assert.deepEqual((await photosWith(sha256(HEIF))).map((p) => p.id), [photoId], 'accepted exactly once');

      // The bytes are freed once accepted; only the small record with the photo id stays.
      assert.equal(await stack.redis.exists(keysOf(location)[1] ?? ''), 0, 'upload bytes freed');
      const again = await head(b.url, location);
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('x-photo-id'), photoId, 'a later HEAD still tells the photo id');
      console.log(`# 3 MB HEIF, 3 cuts, 4 PATCHes on 2 API processes: ${elapsedMs} ms; PATCH offsets ${offsets.join(', ')}`);
    } finally {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  });

  it('creation-with-upload: a small photo finishes in its POST (tus-js-client) and completes', async () => {
    const bytes = distinctJpeg(JPEG, 'tus-small');
    const lastResponse = await new Promise<tus.HttpResponse>((resolve, reject) => {
      new tus.Upload(bytes, {
        endpoint: `${b.url}/v1/uploads`,
        headers: { authorization: `Bearer ${stack.apiKey}` },
        metadata: { filename: 'small.jpg' },
        uploadDataDuringCreation: true,
        storeFingerprintForResuming: false,
        onSuccess: ({ lastResponse }) => resolve(lastResponse),
        onError: reject,
      }).start();
    });
    assert.equal(lastResponse.getStatus(), 201);
    const id = lastResponse.getHeader('x-photo-id');
    assert.ok(id);
    assert.equal(await stack.waitFinal(id), 'complete');
    assert.equal((await stack.getPhoto(id)).body.sha256, sha256(bytes));
  });

  it('an abandoned upload is gone after its expiry, and Redis frees its bytes', async () => {
    const short = await stack.startAnotherApi({ RESUMABLE_UPLOAD_TTL_SECONDS: '2' });
    try {
      const location = await create(short.url, 1_000_000);
      const res = await patch(short.url, location, 0, fakeJpeg(300_000));
      assert.equal(res.status, 204);
      assert.equal(res.headers.get('upload-offset'), '300000');
      const expires = Date.parse(res.headers.get('upload-expires') ?? '');
      assert.ok(expires > Date.now() && expires <= Date.now() + 2_500, `Upload-Expires within the 2 s TTL: ${res.headers.get('upload-expires')}`);
      const [meta, data] = keysOf(location);
      const ttl = await stack.redis.pttl(data ?? '');
      assert.ok(ttl > 0 && ttl <= 2_000, `the bytes carry the TTL (${ttl} ms)`);
      assert.ok((await stack.redis.pttl(meta ?? '')) > 0);

      await new Promise((r) => setTimeout(r, 2_300));
      assert.equal(await existing(location), 0, 'every key of the upload is gone');
      assert.equal((await head(a.url, location)).status, 404);
    } finally {
      await short.proc.stop();
    }
  });

  it('an Upload-Length over UPLOAD_MAX_BYTES is refused at creation, before any byte is stored', async () => {
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

  it('is the tenant\'s alone: no key is 401 before any byte, another tenant sees 404', async () => {
    const other = await newTenant(stack, 'other');
    const location = await create(a.url, 10_000);
    assert.equal((await patch(a.url, location, 0, fakeJpeg(10_000).subarray(0, 4_000))).status, 204);

    assert.equal((await head(b.url, location, other.key)).status, 404);
    assert.equal((await patch(b.url, location, 4_000, randomBytes(6_000), other.key)).status, 404);
    assert.equal((await fetch(`${b.url}${location}`, { method: 'DELETE', headers: auth(other.key) })).status, 404);
    assert.equal((await fetch(`${b.url}${location}`, { method: 'HEAD', headers: { 'tus-resumable': '1.0.0' } })).status, 401);
    const anonymous = await fetch(`${a.url}/v1/uploads`, { method: 'POST', headers: { 'tus-resumable': '1.0.0', 'upload-length': '1000' } });
    assert.equal(anonymous.status, 401);
    assert.equal(((await anonymous.json()) as { error: { code: string } }).error.code, 'unauthorized');
    // A CORS preflight needs no key and tells only the protocol's limits.
    const options = await fetch(`${a.url}/v1/uploads`, { method: 'OPTIONS' });
    assert.equal(options.status, 204);
    assert.equal(options.headers.get('tus-max-size'), String(MAX_BYTES));

    const own = await head(b.url, location);
    assert.equal(own.status, 200);
    assert.equal(own.headers.get('upload-offset'), '4000', "the other tenant's attempts changed nothing");
    assert.equal((await fetch(`${b.url}${location}`, { method: 'DELETE', headers: auth() })).status, 204);
    assert.equal(await existing(location), 0, 'termination frees the keys');
  });

  it('a declared checksum: known content is answered at creation with its photo; a mismatch is 422 and nothing is kept', async () => {
    // Known: the photo of the first test holds the HEIF's content.
    const [owner] = await photosWith(sha256(HEIF));
    assert.ok(owner);
    const before = await uploadKeyCount();
    const known = await fetch(`${a.url}/v1/uploads`, {
      method: 'POST',
      headers: { ...auth(), 'upload-length': String(HEIF.length), 'upload-metadata': `sha256 ${Buffer.from(sha256(HEIF)).toString('base64')}` },
    });
    assert.equal(known.status, 200);
    assert.equal(known.headers.get('x-photo-id'), owner.id);
    assert.equal(known.headers.get('x-photo-duplicate'), 'true');
    assert.deepEqual(await known.json(), { id: owner.id, status: 'complete', statusUrl: `/v1/photos/${owner.id}`, duplicate: true });
    assert.equal(await uploadKeyCount(), before, 'no upload created');

    // A mismatch: refused once the last byte is in, and the upload is deleted.
    const bytes = distinctJpeg(JPEG, 'tus-mismatch');
    const wrong = sha256(Buffer.concat([bytes, Buffer.from('!')]));
    const location = await create(a.url, bytes.length, { headers: { 'x-content-sha256': wrong } });
    assert.equal((await patch(a.url, location, 0, bytes.subarray(0, 10_000))).status, 204);
    const last = await patch(b.url, location, 10_000, bytes.subarray(10_000));
    assert.equal(last.status, 422, await last.text());
    assert.equal(await existing(location), 0, 'nothing of the upload is kept');
    assert.deepEqual(await photosWith(sha256(bytes)), [], 'no photo');
    assert.equal((await head(a.url, location)).status, 404);
  });

  it('an accept that fails (RabbitMQ has no queue) leaves the complete upload; a HEAD on the other process hands it on once', async () => {
    // Workers stopped, so nobody declares the ingest queue again before the final PATCH.
    for (const p of stack.procs.filter((x) => x.name.startsWith('worker-') && x.running)) await p.stop();
    await stack.amqp((ch) => ch.deleteQueue(stack.queue('ingest')));
    try {
      const bytes = distinctJpeg(JPEG, 'tus-accept-fails');
      const location = await create(a.url, bytes.length, { filename: 'accept-fails.jpg' });
      const final = await patch(a.url, location, 0, bytes);
      assert.equal(final.status, 503, 'the queue was missing: no success without acceptance');
      assert.equal(await stack.redis.exists(keysOf(location)[1] ?? ''), 1, 'bytes kept for the retry');
      assert.deepEqual(await photosNamed('accept-fails.jpg'), [], 'nothing half-accepted');

      // A declared the topology again after the unroutable publish; B's accept goes through.
      const retried = await head(b.url, location);
      assert.equal(retried.status, 200);
      const photoId = retried.headers.get('x-photo-id');
      assert.ok(photoId);
      assert.equal((await head(a.url, location)).headers.get('x-photo-id'), photoId);
      assert.deepEqual((await photosNamed('accept-fails.jpg')).map((p) => p.id), [photoId], 'accepted once');
      await stack.startWorkers([...WORKER_ROLES]);
      assert.equal(await stack.waitFinal(photoId, 60_000), 'complete');
      assert.equal((await stack.getPhoto(photoId)).body.sha256, sha256(bytes));
    } finally {
      if (!stack.procs.some((p) => p.name.startsWith('worker-') && p.running)) await stack.startWorkers([...WORKER_ROLES]);
    }
  });

  it('a stalled PATCH on one process gives way to the client on the other; concurrent PATCHes never corrupt the offset', async () => {
    const bytes = distinctJpeg(photo('jpg/hdr/iphone_hdr_NO.jpg'), 'tus-stalled');
    assert.ok(bytes.length > 400_000, `${bytes.length}`);
    const location = await create(a.url, bytes.length, { filename: 'stalled.jpg' });
    const stalledAt = 300_000;

    // The phone's first PATCH stalls on A (its network went away without a FIN).
    const stalled = stalledPatch(a.url, location, 0, bytes, stalledAt);
    await new Promise((r) => setTimeout(r, 300));

    // The phone, now on another network, lands on B and blindly retries from 0: B asks A to let
    // go of the lock, A stops and keeps what it received, and B finds the offset has moved.
    const t0 = Date.now();
    const blind = await patch(b.url, location, 0, bytes);
    const waitedMs = Date.now() - t0;
    assert.equal(blind.status, 409, 'offset conflict, nothing written');
    assert.ok(waitedMs < LOCK_DRAIN_MS + 1_500, `the stalled holder released within its drain time (${waitedMs} ms)`);
    assert.ok([204, 'closed'].includes(await stalled.answer));
    stalled.req.destroy();

    const h = await head(b.url, location);
    const offset = Number(h.headers.get('upload-offset'));
    assert.equal(offset, stalledAt, 'every byte the stalled PATCH received counts');

    // Two PATCHes from that offset at once, one on each process: one writes, the other gets 409
    // (or writes nothing); the offset stays the length of what was stored in order.
    const rest = bytes.subarray(offset);
    const results = await Promise.all([patch(a.url, location, offset, rest), patch(b.url, location, offset, rest)]);
    const statuses = results.map((r) => r.status).sort();
    assert.ok(statuses.every((s) => s === 204 || s === 409), `statuses ${statuses.join(', ')}`);
    assert.ok(statuses.includes(204));
    const now = Number((await head(a.url, location)).headers.get('upload-offset'));
    if (now < bytes.length) assert.equal((await patch(a.url, location, now, bytes.subarray(now))).status, 204);
    const accepted = await photosNamed('stalled.jpg');
    assert.equal(accepted.length, 1, 'accepted once');
    assert.equal(await stack.waitFinal(accepted[0]!.id), 'complete');
    assert.equal((await stack.getPhoto(accepted[0]!.id)).body.sha256, sha256(bytes), 'the stored bytes are exactly the source');
    console.log(`# stalled holder gave way after ${waitedMs} ms; concurrent PATCHes answered ${statuses.join(', ')}`);
  });

  it('a process that dies holding the lock blocks a resume for at most the lease', async () => {
    const bytes = distinctJpeg(photo('jpg/hdr/iphone_hdr_NO.jpg'), 'tus-dead-holder');
    const location = await create(b.url, bytes.length, { filename: 'dead-holder.jpg' });
    const stalled = stalledPatch(a.url, location, 0, bytes, 300_000);
    await waitFor('A to store the first pieces', async () => ((await stack.redis.strlen(keysOf(location)[1] ?? '')) > 0 ? true : null), 5_000, 20);
    a.proc.kill('SIGKILL');
    await a.proc.exited;
    stalled.req.destroy();

    const t0 = Date.now();
    const h = await head(b.url, location);
    const waitedMs = Date.now() - t0;
    assert.equal(h.status, 200);
    assert.ok(waitedMs <= LOCK_LEASE_MS + 1_000, `waited ${waitedMs} ms for a dead holder's lock`);
    // Whole pieces appended before the crash count; the piece it still held in memory is lost.
    const offset = Number(h.headers.get('upload-offset'));
    assert.ok(offset > 0 && offset <= 300_000, `offset ${offset}`);
    assert.equal((await patch(b.url, location, offset, bytes.subarray(offset))).status, 204);
    const accepted = await photosNamed('dead-holder.jpg');
    assert.equal(accepted.length, 1);
    assert.equal(await stack.waitFinal(accepted[0]!.id), 'complete');
    assert.equal((await photosNamed('dead-holder.jpg'))[0]?.sha256, sha256(bytes));
    console.log(`# dead holder: resumed after ${waitedMs} ms (lease ${LOCK_LEASE_MS} ms) at offset ${offset}`);
  });
});
