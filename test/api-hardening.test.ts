import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { ApiKeyRepo } from '../src/db/api-key-repo.js';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { freePort, Stack, waitFor, type Proc } from './helpers/stack.js';

/**
 * The API against hostile clients, on real services: keys are checked before any body is read,
 * every route reads at most what it needs, slow and oversized request heads are cut, failed
 * authentications are rate-limited per address, a tenant's frame is decoded before it is stored,
 * tenants never see internal failure details, /readyz tells anonymous callers only ok/fail, and
 * every client value is validated before it reaches SQL.
 */

const ADMIN_API_KEY = 'admin-key-for-hardening-tests-0123456789';
const HEADERS_TIMEOUT_MS = 1_500;
const DECLARED = 20 * 1024 * 1024;

interface ErrorBody {
  error: { code: string; message: string };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  ms: number;
}

/**
 * Sends a request head that announces a body (Content-Length, or chunked) and never sends the
 * body: the API must answer from the head alone. Rejects when no answer comes within 5 s.
 */
function headOnly(url: string, method: string, headers: Record<string, string>, framing: 'length' | 'chunked' = 'length', declared = DECLARED): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const h = framing === 'length' ? { ...headers, 'content-length': String(declared) } : { ...headers, 'transfer-encoding': 'chunked' };
    const req = request(url, { method, headers: h, agent: false });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`${method} ${url}: no answer within 5 s`));
    }, 5_000);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: performance.now() - started });
      });
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.flushHeaders();
  });
}

/** A plain request on its own connection (no keep-alive pool that would hold sockets open). */
function send(url: string, method: string, headers: Record<string, string> = {}, body?: Buffer | string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(url, { method, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: false });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, ms: performance.now() - started }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function errorOf(a: Answer, status: number | number[], code?: string | RegExp): ErrorBody {
  const statuses = Array.isArray(status) ? status : [status];
  assert.ok(statuses.includes(a.status), `expected ${statuses.join('/')}, got ${a.status}: ${a.body}`);
  assert.match(String(a.headers['content-type']), /application\/json/);
  const body = JSON.parse(a.body) as ErrorBody;
  assert.deepEqual(Object.keys(body), ['error']);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message']);
  assert.ok(body.error.message.length > 0);
  if (typeof code === 'string') assert.equal(body.error.code, code);
  else if (code) assert.match(body.error.code, code);
  return body;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td) >>> 0);
  return Buffer.concat([len, td, crc]);
}

/** The chunks of a PNG: offset of each chunk's length field, its data length and type. */
function pngChunks(png: Buffer): { at: number; length: number; type: string }[] {
  const out = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    out.push({ at, length, type: png.toString('ascii', at + 4, at + 8) });
    at += 12 + length;
  }
  return out;
}

describe('API hardening', () => {
  let stack: Stack;
  let addressCount = 0;
  /** A fresh client address per check (the API trusts X-Forwarded-For from 127.0.0.1 here), so failure counts never mix. */
  const fresh = () => `198.51.100.${++addressCount}`;
  const tenant = (extra: Record<string, string> = {}) => ({ authorization: `Bearer ${stack.apiKey}`, ...extra });
  const admin = (extra: Record<string, string> = {}) => ({ authorization: `Bearer ${ADMIN_API_KEY}`, ...extra });
  const url = (path: string) => `${stack.apiUrl}${path}`;

  before(async () => {
    stack = await Stack.start({
      workers: 'one',
      env: { ADMIN_API_KEY, TRUST_PROXY: '127.0.0.1', HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS), STAGE_MAX_ATTEMPTS: 'upload=1' },
    });
  });

  after(async () => {
    await stack?.stop();
  });

  // Every route that takes a body, with a Content-Type it would parse.
  const bodyRoutes: [string, string, string][] = [
    ['POST', '/v1/photos', 'image/jpeg'],
    ['POST', '/v1/photos', 'multipart/form-data; boundary=x'],
    ['PUT', '/v1/frame', 'image/png'],
    ['DELETE', '/v1/frame', 'application/json'],
    ['POST', '/v1/admin/dlq/replay', 'application/json'],
  ];

  it('refuses anonymous and wrong-key requests on every route that takes a body at once, from the head alone', async () => {
    const checks: Promise<void>[] = [];
    for (const [method, path, contentType] of bodyRoutes) {
      const variants: [string, Record<string, string>][] = [
        ['no key', {}],
        ['unknown key', { authorization: 'Bearer pp_not-a-real-key' }],
        ['another scheme', { authorization: 'Basic Zm9vOmJhcg==' }],
      ];
      // A tenant's key is no admin key.
      if (path.startsWith('/v1/admin')) variants.push(['tenant key', { authorization: `Bearer ${stack.apiKey}` }]);
      for (const [name, auth] of variants) {
        for (const framing of ['length', 'chunked'] as const) {
          checks.push(
            (async () => {
              const a = await headOnly(url(path), method, { ...auth, 'content-type': contentType, 'x-forwarded-for': fresh() }, framing);
              const what = `${method} ${path} ${name} ${framing}`;
              errorOf(a, 401, 'unauthorized');
              assert.ok(a.ms < 1_000, `${what}: answered after ${a.ms.toFixed(0)} ms`);
              assert.equal(a.headers.connection, 'close', `${what}: the connection is closed rather than drained`);
            })(),
          );
        }
      }
    }
    // No route at all: the small default limit refuses the declared body, or the 404 comes first.
    checks.push(
      headOnly(url('/v1/nothing-here'), 'POST', { 'content-type': 'application/json', 'x-forwarded-for': fresh() }).then((a) => {
        errorOf(a, [404, 413]);
        assert.ok(a.ms < 1_000);
      }),
    );
    // HEAD routes (made from the GET routes) are authenticated like them.
    for (const path of ['/v1/photos', `/v1/photos/${randomUUID()}`, '/v1/frame']) {
      checks.push(send(url(path), 'HEAD', { 'x-forwarded-for': fresh() }).then((a) => assert.equal(a.status, 401, `HEAD ${path}`)));
    }
    await Promise.all(checks);
    // Nothing was stored for any of them.
    const { rows } = await stack.db.query(`SELECT count(*)::int AS n FROM photos`);
    assert.equal(rows[0].n, 0);
  });

  it('answers an authenticated body over its route’s limit with 413 at once, and refuses a body where none is taken', async () => {
    const cases: [string, string, Record<string, string>, number][] = [
      ['POST', '/v1/photos', tenant({ 'content-type': 'image/jpeg' }), stack.config.UPLOAD_MAX_BYTES + 1],
      ['PUT', '/v1/frame', tenant({ 'content-type': 'image/png' }), stack.config.FRAME_MAX_BYTES + 1],
      // The upload limit is not the frame's: 6 MB is a fine photo and too much for a frame.
      ['PUT', '/v1/frame', tenant({ 'content-type': 'image/png' }), 6_000_000],
      ['DELETE', '/v1/frame', tenant({ 'content-type': 'application/json' }), 10],
      ['POST', '/v1/admin/dlq/replay', admin({ 'content-type': 'application/json' }), 64 * 1024 + 1],
      // An image body sent to a route that takes JSON gets that route's limit, not the upload limit.
      ['POST', '/v1/admin/dlq/replay', admin({ 'content-type': 'image/png' }), 1_000_000],
    ];
    await Promise.all(
      cases.map(async ([method, path, headers, declared]) => {
        const a = await headOnly(url(path), method, { ...headers, 'x-forwarded-for': fresh() }, 'length', declared);
        errorOf(a, 413, 'payload_too_large');
        assert.ok(a.ms < 1_000, `${method} ${path} ${declared}: ${a.ms.toFixed(0)} ms`);
        assert.equal(a.headers.connection, 'close');
      }),
    );
    // DELETE without a body works (and the frame is the default again).
    assert.equal((await send(url('/v1/frame'), 'DELETE', tenant())).status, 204);
  });

  it('cuts a client that dribbles its request headers at the headers timeout, and refuses oversized headers', async () => {
    const started = performance.now();
    const socket = connect(Number(new URL(stack.apiUrl).port), '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (received += d));
    socket.on('error', () => {});
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - started)));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write('POST /v1/photos HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    let lines = 0;
    const dribble = setInterval(() => {
      if (!socket.destroyed) socket.write(`X-Slow-${lines++}: ${'a'.repeat(10)}\r\n`);
    }, 200);
    const bound = HEADERS_TIMEOUT_MS + 1_000 + 1_500; // the limit, Node's check interval, slack on a busy machine
    const ms = await Promise.race([closed, new Promise<number>((resolve) => setTimeout(() => resolve(Infinity), bound + 5_000))]);
    clearInterval(dribble);
    socket.destroy();
    assert.ok(ms < bound, `connection held for ${ms.toFixed(0)} ms, after ${lines} header lines`);
    assert.match(received, /^HTTP\/1\.1 408 /);
    assert.deepEqual(JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)), { error: { code: 'request_timeout', message: 'the request did not arrive in time' } });

    const big = await send(url('/v1/photos'), 'GET', tenant({ 'x-padding': 'p'.repeat(stack.config.HTTP_MAX_HEADER_BYTES) }));
    errorOf(big, 431, 'headers_too_large');
  });

  it('answers fastify’s own refusals in the API’s JSON shape', async () => {
    const replay = (contentType: string, body: string) => send(url('/v1/admin/dlq/replay'), 'POST', admin({ 'content-type': contentType, 'x-forwarded-for': fresh() }), body);
    assert.equal(errorOf(await replay('application/json', '{"stage": "frame",'), 400, 'bad_request').error.message, 'the body is not valid JSON');
    errorOf(await replay('application/json', '{"__proto__": {"x": 1}}'), 400, 'bad_request');
    errorOf(await replay('application/xml', '<stage>frame</stage>'), 415, 'unsupported_media_type');
    errorOf(await replay('application/json', '{"stage": "resize"}'), 400, 'invalid_body');
    errorOf(await replay('application/json', JSON.stringify({ ids: ['x\u0001y'] })), 400, 'invalid_body');
    errorOf(await send(url('/v1/photos/%E0%A4%A'), 'GET', tenant()), 400, 'bad_request');
    errorOf(await send(url(`/v1/photos/${'a'.repeat(300)}`), 'GET', tenant()), [404, 414]);
    errorOf(await send(url('/v1/photos'), 'PATCH', tenant()), 404, 'not_found');
  });

  it('answers 429 with Retry-After to the 31st failed authentication from one address, and serves other addresses', async () => {
    const attacker = '203.0.113.7';
    const statuses: number[] = [];
    for (let i = 0; i < stack.config.AUTH_FAILURE_LIMIT; i++) {
      const a = await send(url('/v1/photos'), 'GET', { authorization: `Bearer pp_${randomUUID()}`, 'x-forwarded-for': attacker });
      statuses.push(a.status);
    }
    assert.deepEqual(new Set(statuses), new Set([401]));
    const limited = await send(url('/v1/photos'), 'GET', { authorization: `Bearer pp_${randomUUID()}`, 'x-forwarded-for': attacker });
    errorOf(limited, 429, 'rate_limited');
    const retryAfter = Number(limited.headers['retry-after']);
    assert.ok(retryAfter >= 1 && retryAfter <= stack.config.AUTH_FAILURE_WINDOW_SECONDS, `Retry-After ${limited.headers['retry-after']}`);
    // Anonymous, admin and body routes are all behind the same count for that address.
    errorOf(await send(url('/v1/frame'), 'GET', { 'x-forwarded-for': attacker }), 429, 'rate_limited');
    errorOf(await headOnly(url('/v1/admin/dlq/replay'), 'POST', { authorization: 'Bearer wrong-admin-key-0123456789', 'content-type': 'application/json', 'x-forwarded-for': attacker }), 429, 'rate_limited');
    // A key nobody has verified yet is not looked up for a blocked address either.
    const { key: newKey } = await new ApiKeyRepo(stack.db).create(`${stack.tenant}-new`);
    errorOf(await send(url('/v1/photos'), 'GET', { authorization: `Bearer ${newKey}`, 'x-forwarded-for': attacker }), 429, 'rate_limited');

    // Other addresses, with valid keys and without, are unaffected.
    const neighbour = fresh();
    assert.equal((await send(url('/v1/photos'), 'GET', tenant({ 'x-forwarded-for': neighbour }))).status, 200);
    assert.equal((await send(url('/v1/photos'), 'GET', { authorization: `Bearer ${newKey}`, 'x-forwarded-for': neighbour })).status, 200);
    errorOf(await send(url('/v1/photos'), 'GET', { authorization: 'Bearer pp_wrong', 'x-forwarded-for': neighbour }), 401, 'unauthorized');
    // An IPv6 client is counted by its /64: rotating the interface id does not reset the count.
    const v6 = (n: number) => `2001:db8:1:2::${n.toString(16)}`;
    for (let i = 0; i < stack.config.AUTH_FAILURE_LIMIT; i++) {
      assert.equal((await send(url('/v1/frame'), 'GET', { 'x-forwarded-for': v6(i + 1) })).status, 401);
    }
    errorOf(await send(url('/v1/frame'), 'GET', { 'x-forwarded-for': v6(999) }), 429, 'rate_limited');
    assert.equal((await send(url('/v1/frame'), 'GET', tenant({ 'x-forwarded-for': '2001:db8:1:3::1' }))).status, 200);
  });

  it('decodes a tenant frame in full before storing it, refusing broken and oversized PNGs while the previous frame stays', async () => {
    const putFrame = (body: Buffer, contentType = 'image/png', query = '?left=10&top=10&width=100&height=100') =>
      send(url(`/v1/frame${query}`), 'PUT', tenant({ 'content-type': contentType, 'x-forwarded-for': fresh() }), body);
    const getFrame = async () => JSON.parse((await send(url('/v1/frame'), 'GET', tenant())).body) as { frame: { custom: boolean; width: number; updatedAt?: string } };

    const good = await sharp({ create: { width: 300, height: 240, channels: 3, background: '#1f77b4' } }).png({ compressionLevel: 1 }).toBuffer();
    assert.equal((await putFrame(good)).status, 200);
    const before = await getFrame();
    assert.equal(before.frame.width, 300);

    const chunks = pngChunks(good);
    const idat = chunks.find((c) => c.type === 'IDAT')!;
    const crcBroken = Buffer.from(good);
    crcBroken[idat.at + 8 + Math.floor(idat.length / 2)]! ^= 0xff; // data changed, CRC left as it was
    const dataBroken = Buffer.from(good);
    for (let i = idat.at + 8 + 16; i < idat.at + 8 + idat.length - 4; i += 5) dataBroken[i]! ^= 0x5a;
    dataBroken.writeUInt32BE(crc32(dataBroken.subarray(idat.at + 4, idat.at + 8 + idat.length)) >>> 0, idat.at + 8 + idat.length); // CRC made to match
    const truncated = good.subarray(0, Math.floor(good.length * 0.6));
    const ihdr = (w: number, h: number) => {
      const d = Buffer.alloc(13);
      d.writeUInt32BE(w, 0);
      d.writeUInt32BE(h, 4);
      d.set([8, 2, 0, 0, 0], 8);
      return pngChunk('IHDR', d);
    };
    const signature = good.subarray(0, 8);
    const bomb = Buffer.concat([signature, ihdr(100_000, 100_000), pngChunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])), pngChunk('IEND', Buffer.alloc(0))]);
    const justOverSide = Buffer.concat([signature, ihdr(stack.config.FRAME_MAX_SIDE_PX + 1, 200), chunks.filter((c) => c.type !== 'IHDR').map((c) => good.subarray(c.at, c.at + 12 + c.length))].flat());

    const refusals: [string, Buffer, string, number, string][] = [
      ['truncated PNG', truncated, 'image/png', 400, 'invalid_frame'],
      ['IDAT with a wrong CRC', crcBroken, 'image/png', 400, 'invalid_frame'],
      ['IDAT with corrupt data and a matching CRC', dataBroken, 'image/png', 400, 'invalid_frame'],
      ['PNG bomb (100000x100000 in IHDR)', bomb, 'image/png', 400, 'frame_too_large'],
      ['one pixel wider than the limit', justOverSide, 'image/png', 400, 'frame_too_large'],
      ['a JPEG sent as image/png', photo('jpg/gps/DSCN0010.jpg'), 'image/png', 415, 'unsupported_media_type'],
      ['a PNG sent as image/jpeg', good, 'image/jpeg', 415, 'unsupported_media_type'],
      ['PNG signature only', signature, 'image/png', 415, 'unsupported_media_type'],
    ];
    for (const [what, body, contentType, status, code] of refusals) {
      const a = await putFrame(body, contentType);
      const e = errorOf(a, status, code);
      assert.doesNotMatch(e.error.message, /vips|libpng|sharp/i, `${what}: ${e.error.message}`);
      assert.deepEqual(await getFrame(), before, `${what}: the previous frame stays`);
    }

    // Window values are whole numbers within the largest frame; empty means the default.
    for (const q of ['left=-1', 'left=1e3', 'left=0x10', 'left=1.5', 'width=99999999999', 'width=0', `width=${stack.config.FRAME_MAX_SIDE_PX + 1}`, 'top=1&top=2', 'height=%201']) {
      errorOf(await putFrame(good, 'image/png', `?${q}`), 400, 'invalid_window');
    }
    errorOf(await putFrame(good, 'image/png', '?left=&top=&width=&height='), 400, 'invalid_window'); // defaults: 586x497 does not fit a 300x240 frame
    assert.deepEqual(await getFrame(), before);

    // A photo of this tenant is still framed with the kept frame.
    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), `frame-${randomUUID()}`));
    assert.equal(await stack.waitFinal(id), 'complete');
    const framed = await sharp((await stack.s3Object(`${stack.tenant}/${id}/framed.jpg`)).body).metadata();
    assert.deepEqual([framed.width, framed.height], [300, 240]);
    assert.equal((await send(url('/v1/frame'), 'DELETE', tenant())).status, 204);
  });

  it('validates every list value and cursor: what Postgres could not take is a 400, never a 500', async () => {
    const list = (query: string) => send(url(`/v1/photos?${query}`), 'GET', tenant());
    const cursorOf = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const id = randomUUID();
    const badCursors: unknown[] = [
      ['1', id],
      ['10000-01-01T00:00:00.000000Z', id],
      ['2024-13-45T00:00:00Z', id],
      ['2024-13-01T00:00:00.000000Z', id],
      ['2023-02-29T00:00:00.000000Z', id],
      ['2024-01-01T24:00:00.000000Z', id],
      ['0000-01-01T00:00:00.000000Z', id],
      ['2024-01-01T00:00:00.000000+01:00', id],
      ['2024-01-01 00:00:00.000000Z', id],
      ['2024-01-01T00:00:00.000Z', id],
      ['2024-01-01T00:00:00.000000Z', 'not-a-uuid'],
      ['2024-01-01T00:00:00.000000Z', `${id}' OR '1'='1`],
      ['2024-01-01T00:00:00.000000Z', id, 'extra'],
      ['2024-01-01T00:00:00.000000Z', 42],
      { createdAt: '2024-01-01T00:00:00.000000Z', id },
      'just a string',
      null,
    ];
    for (const c of badCursors) errorOf(await list(`cursor=${cursorOf(c)}`), 400, /invalid_cursor|invalid_query/);
    for (const raw of ['%00', 'a+b', 'a=b', 'x'.repeat(201), '!!!!']) errorOf(await list(`cursor=${encodeURIComponent(raw)}`), 400, /invalid_cursor|invalid_query/);
    for (const q of ['limit=1e2', 'limit=0x10', 'limit=-1', 'limit=%205', 'limit=5&limit=6', 'limit=9999999999999999999999', 'status=COMPLETE', 'status=failed&status=complete']) {
      errorOf(await list(q), 400, 'invalid_query');
    }
    // The edges Postgres takes are fine: the largest and smallest positions, a leap day.
    for (const c of [['9999-12-31T23:59:59.999999Z', id], ['0001-01-01T00:00:00.000000Z', id], ['2024-02-29T12:00:00.000000Z', id]]) {
      const a = await list(`cursor=${cursorOf(c)}`);
      assert.equal(a.status, 200, `${JSON.stringify(c)}: ${a.body}`);
    }
    // Admin values too.
    const adminGet = (path: string) => send(url(path), 'GET', admin({ 'x-forwarded-for': fresh() }));
    for (const q of ['stage=resize', 'limit=0', 'limit=1e2', 'limit=1001']) errorOf(await adminGet(`/v1/admin/dlq?${q}`), 400, 'invalid_query');
    errorOf(await adminGet('/v1/admin/photos/not-a-uuid'), 404, 'not_found');
    errorOf(await adminGet(`/v1/admin/photos/${randomUUID()}`), 404, 'not_found');
  });

  it('answers relative status URLs without PUBLIC_BASE_URL, whatever Host the client sends', async () => {
    const bytes = distinctJpeg(photo('jpg/gps/DSCN0012.jpg'), `rel-${randomUUID()}`);
    const a = await send(url('/v1/photos'), 'POST', tenant({ 'content-type': 'image/jpeg', host: 'evil.example', 'x-forwarded-host': 'evil.example' }), bytes);
    assert.equal(a.status, 202, a.body);
    const { id, statusUrl } = JSON.parse(a.body) as { id: string; statusUrl: string };
    assert.equal(statusUrl, `/v1/photos/${id}`);
    assert.equal(a.headers.location, statusUrl);
    const view = JSON.parse((await send(url(statusUrl), 'GET', tenant({ host: 'evil.example' }))).body) as { statusUrl: string };
    assert.equal(view.statusUrl, `/v1/photos/${id}`);
    await stack.waitFinal(id);
  });

  describe('with a second API process (PUBLIC_BASE_URL, a connection cap)', () => {
    let api: Proc;
    let base: string;
    const MAX_CONNECTIONS = 4;

    before(async () => {
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      api = stack.spawnCli('api-capped', ['api'], { PORT: String(port), PUBLIC_BASE_URL: 'https://photos.example.com/', HTTP_MAX_CONNECTIONS: String(MAX_CONNECTIONS) });
      // Ready, not only alive: an upload before its broker connection is up is refused for that reason.
      await waitFor('capped API /readyz', async () => (await send(`${base}/readyz`, 'GET').catch(() => null))?.status === 200, 30_000, 200);
    });

    after(async () => {
      await api?.stop();
    });

    it('builds absolute status URLs from PUBLIC_BASE_URL', async () => {
      const bytes = distinctJpeg(photo('jpg/gps/DSCN0012.jpg'), `abs-${randomUUID()}`);
      const a = await send(`${base}/v1/photos`, 'POST', tenant({ 'content-type': 'image/jpeg', host: 'evil.example' }), bytes);
      assert.equal(a.status, 202, a.body);
      const { id, statusUrl } = JSON.parse(a.body) as { id: string; statusUrl: string };
      assert.equal(statusUrl, `https://photos.example.com/v1/photos/${id}`);
      assert.equal(a.headers.location, statusUrl);
      await stack.waitFinal(id);
    });

    it('closes connections beyond HTTP_MAX_CONNECTIONS at once and serves again once they are gone', async () => {
      const port = Number(new URL(base).port);
      const open = async () => {
        const s = connect(port, '127.0.0.1');
        s.on('error', () => {});
        await new Promise<void>((resolve, reject) => s.once('connect', () => resolve()).once('error', reject));
        return s;
      };
      const held = [];
      for (let i = 0; i < MAX_CONNECTIONS; i++) held.push(await open());
      const extra = await open();
      const closedAt = await new Promise<number>((resolve) => {
        const t0 = performance.now();
        extra.once('close', () => resolve(performance.now() - t0));
        extra.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        setTimeout(() => resolve(Infinity), 3_000);
      });
      assert.ok(closedAt < 1_000, `a connection over the cap was kept for ${closedAt} ms`);
      for (const s of held) s.destroy();
      await waitFor('a request served again', async () => (await send(`${base}/healthz`, 'GET').catch(() => null))?.status === 200, 5_000, 50);
    });
  });

  // Last: it stops the stack's S3 server.
  it('shows tenants a generic reason for a storage failure, keeps the detail for operators, and keeps /readyz anonymous and terse', async () => {
    await stack.s3Server!.stop();
    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), `s3down-${randomUUID()}`));
    assert.equal(await stack.waitFinal(id, 90_000), 'failed');

    const { rows } = await stack.db.query(`SELECT error FROM photos WHERE id = $1`, [id]);
    const stored = rows[0].error as { stage: string; code: string; reason: string };
    assert.equal(stored.stage, 'upload');
    assert.match(stored.code, /^s3_/);
    // The stored detail is for operators: it names what failed and where.
    assert.match(stored.reason, new RegExp(`${id}|127\\.0\\.0\\.1|ECONNREFUSED|S3`));

    const leaks = [id, stack.tenant, '127.0.0.1', 'ECONNREFUSED', 'localhost', String(new URL(stack.env.S3_ENDPOINT!).port), '.jpg', 'S3 put', ' at '];
    const view = JSON.parse((await send(url(`/v1/photos/${id}`), 'GET', tenant())).body) as { error: { stage: string; code: string; reason: string } };
    assert.deepEqual(Object.keys(view.error).sort(), ['code', 'reason', 'stage']);
    assert.equal(view.error.stage, 'upload');
    assert.equal(view.error.code, stored.code);
    for (const leak of leaks) assert.ok(!view.error.reason.includes(leak), `reason "${view.error.reason}" contains ${leak}`);
    const listed = JSON.parse((await send(url('/v1/photos?status=failed'), 'GET', tenant())).body) as { items: { id: string; error: { reason: string } }[] };
    const item = listed.items.find((p) => p.id === id);
    assert.ok(item);
    assert.equal(item.error.reason, view.error.reason);
    // The admin API shows the detail.
    const detail = JSON.parse((await send(url(`/v1/admin/photos/${id}`), 'GET', admin({ 'x-forwarded-for': fresh() }))).body) as { error: { reason: string } };
    assert.equal(detail.error.reason, stored.reason);

    // /readyz while S3 is down: which check failed, and nothing about why.
    const ready = await send(url('/readyz'), 'GET');
    assert.equal(ready.status, 503);
    assert.deepEqual(JSON.parse(ready.body), { status: 'not_ready', checks: { redis: 'ok', rabbitmq: 'ok', postgres: 'ok', s3: 'fail' } });
    // Many probes at once all get the answer (they share one round of checks).
    const answers = await Promise.all(Array.from({ length: 50 }, () => send(url('/readyz'), 'GET')));
    assert.ok(answers.every((r) => r.status === 503 && !/error|ECONN|127\.0\.0\.1/.test(r.body)));

    await stack.startS3();
    await waitFor('ready again', async () => (await send(url('/readyz'), 'GET')).status === 200, 15_000, 200);
    assert.deepEqual(JSON.parse((await send(url('/readyz'), 'GET')).body), { status: 'ready', checks: { redis: 'ok', rabbitmq: 'ok', postgres: 'ok', s3: 'ok' } });
  });
});
