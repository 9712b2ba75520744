import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { readFileSync } from 'node:fs';
import { crc32, createDeflate } from 'node:zlib';
import { randomUUID } from 'node:crypto';
import sharp from 'sharp';
import { STAGES } from '../src/shared/config.js';
import { ApiKeyRepo } from '../src/db/api-key-repo.js';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { freePort, Stack, waitFor, type PhotoView, type Proc } from './helpers/stack.js';

/**
 * Hostile and broken input on real services: every bad request gets a clear 4xx JSON error or a
 * dead letter with a reason, while good photos in flight are unaffected; and load shedding
 * answers 503 + Retry-After while a backlog or Redis memory is above its limit.
 */

const UPLOAD_MAX_BYTES = 600_000;

interface ErrorBody {
  error: { code: string; message: string };
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * POST with node:http so the test controls framing: a Content-Length body or a chunked one. The
 * server may answer (413) before the body is sent in full; the answer is what counts.
 */
/**
 * POSTs a body in chunks. Once `holdAfterBytes` are sent the server has all it needs to refuse, so
 * the rest waits (up to 5 s) for its answer: a server that refuses and closes the connection
 * while the client is still writing would otherwise make the client fail with EPIPE before it
 * reads the answer. A server that does not answer by then gets the rest of the body.
 */
function rawPost(url: string, headers: Record<string, string>, chunks: Buffer[], framing: 'length' | 'chunked', holdAfterBytes: number): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const total = chunks.reduce((n, c) => n + c.length, 0);
    let answered = false;
    const req = request(url, { method: 'POST', headers: framing === 'length' ? { ...headers, 'content-length': String(total) } : headers }, (res) => {
      answered = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    req.flushHeaders();
    void (async () => {
      let sent = 0;
      for (const c of chunks) {
        if (sent >= holdAfterBytes) {
          for (let waited = 0; !answered && !req.destroyed && waited < 5_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
        }
        if (req.destroyed || answered) return;
        if (!req.write(c)) await new Promise((r) => req.once('drain', r).once('close', r));
        sent += c.length;
      }
      req.end();
    })();
  });
}

async function expectError(res: Response, status: number, code: string | RegExp): Promise<ErrorBody> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${text}`);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  const body = JSON.parse(text) as ErrorBody;
  assert.equal(typeof body.error?.message, 'string');
  assert.ok(body.error.message.length > 0);
  if (typeof code === 'string') assert.equal(body.error.code, code);
  else assert.match(body.error.code, code);
  return body;
}

/**
 * A decompression bomb: a valid 8-bit greyscale PNG of width x height solid black, whose IDAT is
 * deflated row by row (a few hundred KB for 20000 x 20000 = 400 MP). Built with zlib because
 * encoding 400 MP through sharp takes ~10 s of CPU on the shared test machine; sharp reads it back
 * below to prove it is what it claims.
 */
async function pngBomb(width: number, height: number): Promise<Buffer> {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8); // bit depth 8, greyscale, deflate, adaptive filtering, no interlace
  const deflate = createDeflate({ level: 9 });
  const parts: Buffer[] = [];
  deflate.on('data', (d: Buffer) => parts.push(d));
  const done = new Promise((resolve, reject) => deflate.on('end', resolve).on('error', reject));
  const rowsPerWrite = 200;
  const block = Buffer.alloc((width + 1) * rowsPerWrite); // filter byte 0 + zero pixels, never modified
  for (let y = 0; y < height; y += rowsPerWrite) {
    const rows = Math.min(rowsPerWrite, height - y);
    if (!deflate.write(rows === rowsPerWrite ? block : block.subarray(0, (width + 1) * rows))) await new Promise((r) => deflate.once('drain', r));
  }
  deflate.end();
  await done;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.concat(parts)), chunk('IEND', Buffer.alloc(0))]);
}

/** Peak resident memory of a process so far (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmHWM readable');
  return Number(m[1]) * 1024;
}

async function photoRow(stack: Stack, id: string): Promise<{ status: string; error: { stage: string; reason: string; code: string } | null; original_name: string | null; exif_raw: Record<string, unknown> | null }> {
  const { rows } = await stack.db.query(`SELECT status, error, original_name, exif_raw FROM photos WHERE id = $1`, [id]);
  assert.ok(rows[0], `photo ${id} exists`);
  return rows[0];
}

describe('hostile input', () => {
  let stack: Stack;
  let worker: Proc;
  const good = () => distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), `good-${randomUUID()}`);
  const post = (headers: Record<string, string>, body?: Buffer | string | FormData) => fetch(`${stack.apiUrl}/v1/photos`, { method: 'POST', headers, body });

  before(async () => {
    stack = await Stack.start({ workers: 'none', env: { UPLOAD_MAX_BYTES: String(UPLOAD_MAX_BYTES) } });
    worker = await stack.startWorkers([...STAGES]);
  });

  after(async () => {
    await stack?.stop();
  });

  it('answers broken uploads with a clear 4xx JSON error while good photos in flight complete', async () => {
    const inFlight = Promise.all([good(), good(), good()].map((b) => stack.uploadOk(b)));
    const auth = { authorization: `Bearer ${stack.apiKey}` };
    const jpegHead = photo('jpg/gps/DSCN0012.jpg');
    const oversize = Buffer.concat([jpegHead, Buffer.alloc(UPLOAD_MAX_BYTES + 50_000 - jpegHead.length, 7)]);
    const textForm = new FormData();
    textForm.append('note', 'no file here');
    const wrongField = new FormData();
    wrongField.append('photo', new Blob([good()], { type: 'image/jpeg' }), 'x.jpg');
    const bigForm = new FormData();
    bigForm.append('file', new Blob([oversize], { type: 'image/jpeg' }), 'big.jpg');

    const checks: Promise<unknown>[] = [
      post({ ...auth, 'content-type': 'image/jpeg' }, Buffer.alloc(0)).then((r) => expectError(r, 400, 'empty_body')),
      post({ ...auth, 'content-type': 'image/jpeg' }, Buffer.from('%PDF-1.7 definitely not a picture, but long enough to sniff '.repeat(4))).then((r) =>
        expectError(r, 415, 'unsupported_media_type'),
      ),
      post({ ...auth, 'content-type': 'text/plain' }, 'hello').then((r) => expectError(r, 415, 'unsupported_media_type')),
      post({ ...auth, 'content-type': 'application/json' }, '{"file":"x"}').then((r) => expectError(r, 415, 'unsupported_media_type')),
      post({ ...auth }, textForm).then((r) => expectError(r, 400, 'missing_file')),
      post({ ...auth }, wrongField).then((r) => expectError(r, 400, 'missing_file')),
      post({ ...auth }, bigForm).then((r) => expectError(r, 413, 'payload_too_large')),
      post({ 'content-type': 'image/jpeg' }, good()).then((r) => expectError(r, 401, 'unauthorized')),
      post({ authorization: 'Bearer pp_not-a-real-key', 'content-type': 'image/jpeg' }, good()).then((r) => expectError(r, 401, 'unauthorized')),
      post({ authorization: 'Basic Zm9vOmJhcg==', 'content-type': 'image/jpeg' }, good()).then((r) => expectError(r, 401, 'unauthorized')),
      // Over UPLOAD_MAX_BYTES, announced by Content-Length (refused before reading) and chunked (refused at the limit).
      ...(['length', 'chunked'] as const).map(async (framing) => {
        const chunks = Array.from({ length: Math.ceil(oversize.length / 64_000) }, (_, i) => oversize.subarray(i * 64_000, (i + 1) * 64_000));
        // By Content-Length the API refuses before reading any of the body; chunked, once the limit is passed.
        const res = await rawPost(`${stack.apiUrl}/v1/photos`, { ...auth, 'content-type': 'image/jpeg' }, chunks, framing, framing === 'length' ? 0 : UPLOAD_MAX_BYTES + 1);
        assert.equal(res.status, 413, `${framing}: ${res.body}`);
        assert.equal((JSON.parse(res.body) as ErrorBody).error.code, 'payload_too_large');
      }),
    ];
    await Promise.all(checks);

    // Nothing was stored for the refused requests: only the three good photos exist so far.
    const goodIds = await inFlight;
    const { rows } = await stack.db.query(`SELECT id FROM photos WHERE tenant_id = $1`, [stack.tenant]);
    assert.deepEqual(rows.map((r) => r.id).sort(), [...goodIds].sort());
    const states = await stack.waitAllFinal(goodIds, 90_000);
    assert.deepEqual([...states.values()], ['complete', 'complete', 'complete']);
  });

  it('accepts a raw upload whose Content-Type carries parameters', async () => {
    const res = await post({ authorization: `Bearer ${stack.apiKey}`, 'content-type': 'image/jpeg; charset=binary' }, good());
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = (await res.json()) as { id: string };
    assert.equal(await stack.waitFinal(id), 'complete');
  });

  it('accepts a multipart upload and records the sanitized file name', async () => {
    const form = new FormData();
    form.append('caption', 'a field before the file is fine');
    form.append('file', new Blob([good()], { type: 'image/jpeg' }), 'holiday\u0007 photo.jpg');
    const res = await post({ authorization: `Bearer ${stack.apiKey}` }, form);
    assert.equal(res.status, 202);
    const { id, status, statusUrl } = (await res.json()) as { id: string; status: string; statusUrl: string };
    assert.equal(status, 'queued');
    // Relative: the stack sets no PUBLIC_BASE_URL, and the request's Host is not trusted to build one.
    assert.equal(statusUrl, `/v1/photos/${id}`);
    assert.equal(res.headers.get('location'), statusUrl);
    assert.equal(await stack.waitFinal(id), 'complete');
    const v = await stack.getPhoto(id);
    assert.equal(v.body.file?.originalName, 'holiday photo.jpg');
    assert.equal(v.body.file?.width, 640);
  });

  it('keeps only a safe last path segment of X-Filename', async () => {
    const cases: [string, string | null][] = [
      [encodeURIComponent('../../etc/passwd\u0007.jpg'), 'passwd.jpg'],
      ['../../etc/passwd.jpg', 'passwd.jpg'],
      ['..\\..\\windows\\system32\\boot.jpg', 'boot.jpg'],
      [encodeURIComponent('\u202Egpj.exe'), 'gpj.exe'],
      ['.hidden.jpg', 'hidden.jpg'],
      [encodeURIComponent('../..'), null],
      ['100%.jpg', '100%.jpg'], // not valid percent-encoding: kept as sent
      [encodeURIComponent('a'.repeat(400) + '.jpg'), 'a'.repeat(255)],
    ];
    const ids = await Promise.all(cases.map(([header]) => stack.uploadOk(good(), { filename: header })));
    for (const [i, [header, expected]] of cases.entries()) {
      const row = await photoRow(stack, ids[i]!);
      assert.equal(row.original_name, expected, `X-Filename ${header}`);
    }
    await stack.waitAllFinal(ids, 90_000);
  });

  it('fails a decompression bomb at ingest with image_too_large, without decoding it', async () => {
    const bomb = await pngBomb(20_000, 20_000);
    assert.ok(bomb.length < UPLOAD_MAX_BYTES, `bomb is ${bomb.length} bytes`);
    const m = await sharp(bomb, { limitInputPixels: false }).metadata();
    assert.deepEqual([m.format, m.width, m.height], ['png', 20_000, 20_000]);
    // Every decoder has the pixel limit too, so a file that gets past a header check is still refused.
    await assert.rejects(sharp(bomb).resize(32).raw().toBuffer(), /pixel limit/);

    const peakBefore = peakRss(worker.pid);
    const id = await stack.uploadOk(bomb, { contentType: 'image/png' });
    assert.equal(await stack.waitFinal(id), 'failed');
    const row = await photoRow(stack, id);
    assert.equal(row.error?.stage, 'ingest');
    assert.equal(row.error?.code, 'image_too_large');
    assert.match(row.error?.reason ?? '', /20000x20000 \(400\.0 MP\), above the 75\.0 MP limit/);

    // As if the bomb had got past ingest: the thumbnail stage refuses it by the same limit.
    await stack.amqp(async (ch) => {
      const msg = { v: 1, photoId: id, tenantId: stack.tenant, rawKey: `${stack.config.REDIS_KEY_PREFIX}blob:${id}:raw` };
      ch.publish(stack.config.AMQP_PREFIX, 'thumbnail', Buffer.from(JSON.stringify(msg)), { persistent: true });
      await ch.checkQueue(stack.queue('thumbnail'));
    });
    const letter = await waitFor(
      'the thumbnail dead letter of the bomb',
      async () =>
        stack.amqp(async (ch) => {
          const { messageCount } = await ch.checkQueue(stack.dlq('thumbnail'));
          for (let i = 0; i < messageCount; i++) {
            const msg = await ch.get(stack.dlq('thumbnail'), { noAck: false });
            if (msg && msg.properties.headers?.['x-photo-id'] === id) return msg.properties.headers;
          }
          return null;
        }),
      30_000,
      250,
    );
    assert.equal(letter['x-error-code'], 'image_too_large');
    assert.equal(letter['x-attempts'], 1);
    assert.match(String(letter['x-reason']), /pixel limit/);

    // A decode of 400 MP would need at least 400 MB; the worker stayed far from that.
    const growth = peakRss(worker.pid) - peakBefore;
    assert.ok(growth < 150 * 1024 * 1024, `worker peak RSS grew by ${(growth / 1e6).toFixed(0)} MB`);
    assert.ok(worker.running);
  });

  it('fails a truncated JPEG with a reason', async () => {
    const bytes = good();
    const id = await stack.uploadOk(bytes.subarray(0, Math.floor(bytes.length / 2)));
    assert.equal(await stack.waitFinal(id), 'failed');
    const v = await stack.getPhoto(id);
    assert.equal(v.body.status, 'failed');
    assert.ok(v.body.error && ['frame', 'thumbnail'].includes(v.body.error.stage));
    assert.equal(v.body.error.code, 'corrupt_image');
    assert.match(v.body.error.reason, /corrupt or truncated/i);
  });

  it('completes a photo with absurd EXIF, storing it bounded and dropping an impossible GPS fix', async () => {
    const bytes = await sharp({ create: { width: 800, height: 600, channels: 3, background: '#2a6f97' } })
      .withExif({
        IFD0: { ImageDescription: `${'A'.repeat(60_000)}END`, Make: 'Evil\u0001Corp', Model: 'x'.repeat(5_000) },
        IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '200/1 0/1 0/1', GPSLongitudeRef: 'E', GPSLongitude: '10/1 0/1 0/1' },
      })
      .jpeg()
      .toBuffer();
    const id = await stack.uploadOk(bytes);
    assert.equal(await stack.waitFinal(id), 'complete');
    const v: PhotoView = (await stack.getPhoto(id)).body;
    assert.ok(v.exif);
    assert.equal(v.exif.gps, null, 'latitude 200 is not a place');
    assert.equal(v.stages.geocode, 'skipped');
    assert.equal(v.exif.make, 'Evil Corp');
    assert.equal(v.exif.model?.length, 200);
    const row = await photoRow(stack, id);
    const desc = String(row.exif_raw?.ImageDescription ?? '');
    assert.ok(desc.length > 0 && desc.length <= 2_001, `stored description is ${desc.length} characters`);
    assert.ok(v.variants?.thumbnail);
  });

  it('hides other tenants’ photos and unknown ids, and rejects bad list queries', async () => {
    const id = await stack.uploadOk(good());
    const other = await new ApiKeyRepo(stack.db).create(`other_${randomUUID().slice(0, 8)}`);
    const get = (path: string, key: string | null) => fetch(`${stack.apiUrl}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });

    assert.equal((await get(`/v1/photos/${id}`, stack.apiKey)).status, 200);
    await expectError(await get(`/v1/photos/${id}`, other.key), 404, 'not_found');
    await expectError(await get(`/v1/photos/${randomUUID()}`, stack.apiKey), 404, 'not_found');
    await expectError(await get(`/v1/photos/not-a-uuid`, stack.apiKey), 404, 'not_found');
    await expectError(await get(`/v1/photos/${encodeURIComponent("' OR 1=1 --")}`, stack.apiKey), 404, 'not_found');
    await expectError(await get(`/v1/photos/${id}`, null), 401, 'unauthorized');
    await expectError(await get(`/v1/photos/${id}`, 'pp_wrong'), 401, 'unauthorized');
    const otherList = (await (await get('/v1/photos', other.key)).json()) as { items: unknown[]; nextCursor: string | null };
    assert.deepEqual(otherList, { items: [], nextCursor: null });

    for (const q of ['limit=0', 'limit=201', 'limit=abc', 'limit=1.5', 'status=bogus']) await expectError(await get(`/v1/photos?${q}`, stack.apiKey), 400, 'invalid_query');
    // Empty filters, as a form would send them, mean "not set".
    const unfiltered = await get('/v1/photos?status=&limit=5&cursor=', stack.apiKey);
    assert.equal(unfiltered.status, 200);
    assert.ok(((await unfiltered.json()) as { items: { id: string }[] }).items.some((p) => p.id === id));
    const forged = Buffer.from(JSON.stringify(['not a date', randomUUID()])).toString('base64url');
    for (const c of ['garbage', forged, 'x'.repeat(300)]) await expectError(await get(`/v1/photos?cursor=${c}`, stack.apiKey), 400, /invalid_cursor|invalid_query/);
    await stack.waitFinal(id);
  });

  it('lists with cursor pagination every photo exactly once, also photos created in the same millisecond', async () => {
    const tenant = `pages_${randomUUID().slice(0, 8)}`;
    const { key } = await new ApiKeyRepo(stack.db).create(tenant);
    // The same bytes each time: one photo is processed, the rest become cheap duplicates.
    const bytes = good();
    const ids: string[] = [];
    for (let i = 0; i < 9; i++) {
      const res = await fetch(`${stack.apiUrl}/v1/photos`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'image/jpeg' }, body: bytes });
      assert.equal(res.status, 202);
      ids.push(((await res.json()) as { id: string }).id);
    }
    // Five photos created within one millisecond (distinct microseconds), as a burst of uploads may be.
    for (const [i, id] of ids.slice(2, 7).entries()) {
      await stack.db.query(`UPDATE photos SET created_at = $2::timestamptz WHERE id = $1`, [id, `2025-01-01T00:00:00.123${100 + i * 100}Z`]);
    }
    for (const limit of [1, 2, 3, 50]) {
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 20; page++) {
        const res = await fetch(`${stack.apiUrl}/v1/photos?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, { headers: { authorization: `Bearer ${key}` } });
        assert.equal(res.status, 200);
        const body = (await res.json()) as { items: { id: string; createdAt: string }[]; nextCursor: string | null };
        assert.ok(body.items.length <= limit);
        seen.push(...body.items.map((i) => i.id));
        cursor = body.nextCursor;
        if (!cursor) break;
      }
      assert.equal(cursor, null, `limit ${limit}: pagination ended`);
      assert.equal(new Set(seen).size, seen.length, `limit ${limit}: no photo twice`);
      assert.deepEqual([...seen].sort(), [...ids].sort(), `limit ${limit}: every photo`);
    }
    const states = await stack.waitAllFinal(ids, 90_000);
    assert.equal([...states.values()].filter((s) => s === 'complete').length, 1);
  });
});

describe('load shedding', () => {
  let stack: Stack;
  const small = () => distinctJpeg(photo('jpg/Canon_40D_photoshop_import.jpg'), `shed-${randomUUID()}`);

  before(async () => {
    // No ingest worker at first: uploads pile up in the ingest queue.
    stack = await Stack.start({ workers: 'none', env: { SHED_INGEST_QUEUE_MAX: '5', SHED_CHECK_INTERVAL_MS: '100' } });
    await stack.startWorkers(['exif', 'geocode', 'frame', 'thumbnail', 'upload']);
  });

  after(async () => {
    await stack?.stop();
  });

  it('refuses uploads with 503 + Retry-After while the ingest backlog is over the limit, and accepts them once it drains', async () => {
    const accepted: string[] = [];
    for (let i = 0; i < 6; i++) accepted.push(await stack.uploadOk(small()));
    assert.equal((await stack.queueStats(stack.queue('ingest'))).messageCount, 6);

    // Within a check interval the shedder sees 6 > 5; an upload accepted before that adds to the backlog.
    const refused = await waitFor(
      'an upload refused with 503',
      async () => {
        const res = await stack.upload(small());
        if (res.status === 202) {
          accepted.push(((await res.json()) as { id: string }).id);
          return null;
        }
        return res;
      },
      10_000,
      50,
    );
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '10');
    const body = (await refused.json()) as ErrorBody;
    assert.equal(body.error.code, 'service_unavailable');
    assert.match(body.error.message, /ingest queue depth \d+ above 5/);
    assert.ok(accepted.length <= 20, `${accepted.length} accepted before shedding started`);
    // Shedding refuses uploads only: reads go on.
    assert.equal((await stack.getPhoto(accepted[0]!)).status, 200);
    const { rows } = await stack.db.query(`SELECT count(*)::int AS n FROM photos`);
    assert.equal(rows[0].n, accepted.length, 'a refused upload stored nothing');

    await stack.startWorkers(['ingest']);
    const again = await waitFor(
      'an upload accepted again',
      async () => {
        const res = await stack.upload(small());
        return res.status === 202 ? ((await res.json()) as { id: string }).id : null;
      },
      60_000,
      200,
    );
    accepted.push(again);
    const states = await stack.waitAllFinal(accepted, 120_000);
    assert.ok([...states.values()].every((s) => s === 'complete'), JSON.stringify([...states.values()]));
  });

  it('refuses uploads with 503 while Redis memory is over SHED_REDIS_MAX_BYTES', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    // Any Redis in use holds more than 1 MB; this API process sheds by memory.
    const api = stack.spawnCli('api-redis-shed', ['api'], { PORT: String(port), SHED_REDIS_MAX_BYTES: String(1024 * 1024) });
    try {
      // Ready, not only alive: an upload before its broker connection is up is refused for that reason.
      await waitFor('API /readyz', async () => (await fetch(`${url}/readyz`).catch(() => null))?.ok, 30_000);
      const res = await waitFor(
        'a 503 for Redis memory',
        async () => {
          const r = await fetch(`${url}/v1/photos`, { method: 'POST', headers: stack.headers({ 'content-type': 'image/jpeg' }), body: small() });
          return r.status === 503 ? r : null;
        },
        10_000,
        100,
      );
      assert.ok(res.headers.get('retry-after'));
      const body = (await res.json()) as ErrorBody;
      assert.equal(body.error.code, 'service_unavailable');
      assert.match(body.error.message, /redis memory \d+ bytes above 1048576/);
      // The stack's own API (no memory limit) still accepts.
      assert.equal((await stack.upload(small())).status, 202);
    } finally {
      await api.stop();
    }
  });
});
