import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import sharp from 'sharp';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { newTenant } from './helpers/fault-check.js';
import { Stack } from './helpers/stack.js';

/**
 * Uploads as mobile and web clients send them, on real services: any binary body is sniffed
 * (application/octet-stream, no Content-Type, and what curl --data-binary sends without -H), the
 * checksum check before sending, and uploads that carry their checksum (verified on arrival,
 * answered with the existing photo when the content is known).
 */

const UPLOAD_MAX_BYTES = 4 * 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * A POST exactly as given: no Content-Type unless one is passed (fetch adds text/plain or
 * application/octet-stream by itself, which is not what the no-Content-Type case is about).
 */
function post(url: string, headers: Record<string, string>, body: Buffer | string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: false });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Small images of every format sharp writes, each with its own colour (so no two share a SHA-256). */
async function made(format: 'png' | 'webp' | 'gif' | 'avif', shade: number): Promise<Buffer> {
  const image = sharp({ create: { width: 96, height: 64, channels: 3, background: { r: shade, g: 120, b: 255 - shade } } });
  return image[format]().toBuffer();
}

describe('uploads: any binary body sniffed, checksums checked', { timeout: 300_000 }, () => {
  let stack: Stack;
  const auth = () => ({ authorization: `Bearer ${stack.apiKey}` });
  const photosUrl = () => `${stack.apiUrl}/v1/photos`;
  const rows = async (tenant = stack.tenant) => (await stack.db.query(`SELECT id, status, sha256 FROM photos WHERE tenant_id = $1`, [tenant])).rows as { id: string; status: string; sha256: string | null }[];
  const blobKeys = async () => stack.redis.keys(`${stack.config.REDIS_KEY_PREFIX}blob:*`);
  const check = async (checksums: unknown, key = stack.apiKey) =>
    fetch(`${stack.apiUrl}/v1/photos/check`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ checksums }) });

  before(async () => {
    stack = await Stack.start({ workers: 'one', env: { UPLOAD_MAX_BYTES: String(UPLOAD_MAX_BYTES) } });
  });

  after(async () => {
    await stack?.stop();
  });

  it('accepts every supported format as application/octet-stream and without a Content-Type, sniffed from the bytes', async () => {
    const jpeg = photo('jpg/gps/DSCN0010.jpg');
    const cases: { format: string; octet: Buffer; none: Buffer }[] = [
      { format: 'jpeg', octet: distinctJpeg(jpeg, 'octet'), none: distinctJpeg(jpeg, 'none') },
      { format: 'png', octet: await made('png', 10), none: await made('png', 20) },
      { format: 'webp', octet: await made('webp', 30), none: await made('webp', 40) },
      { format: 'gif', octet: await made('gif', 50), none: await made('gif', 60) },
      { format: 'avif', octet: await made('avif', 70), none: await made('avif', 80) },
      { format: 'tiff', octet: photo('tiff/Arbitro.tiff'), none: photo('tiff/Jobagent.tiff') },
      { format: 'heif', octet: photo('heic/samplefilehub.heif'), none: photo('heic/IMG_5195.HEIC') },
    ];
    const ids = new Map<string, string>();
    for (const c of cases) {
      for (const [how, bytes, headers] of [
        ['octet-stream', c.octet, { ...auth(), 'content-type': 'application/octet-stream' }],
        ['no Content-Type', c.none, auth()],
      ] as const) {
        const res = await post(photosUrl(), headers, bytes);
        assert.equal(res.status, 202, `${c.format} as ${how}: ${res.body}`);
        ids.set(JSON.parse(res.body).id as string, `${c.format} ${how}`);
      }
    }
    const states = await stack.waitAllFinal([...ids.keys()], 180_000);
    const types: Record<string, string> = { jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', gif: 'image/gif', avif: 'image/avif', tiff: 'image/tiff', heif: 'image/heic' };
    for (const [id, what] of ids) {
      assert.equal(states.get(id), 'complete', what);
      const { rows: [row] } = await stack.db.query(`SELECT content_type FROM photos WHERE id = $1`, [id]);
      assert.equal(row.content_type, types[what.split(' ')[0]!], `${what}: the type is the sniffed one`);
    }
  });

  it('sniffs what curl --data-binary sends without -H (application/x-www-form-urlencoded)', async () => {
    const res = await post(photosUrl(), { ...auth(), 'content-type': 'application/x-www-form-urlencoded' }, distinctJpeg(photo('jpg/gps/DSCN0012.jpg'), 'curl'));
    assert.equal(res.status, 202, res.body);
    assert.equal(await stack.waitFinal(JSON.parse(res.body).id as string), 'complete');
  });

  it('answers a body that is no image 415, naming the formats and what to send; nothing is stored', async () => {
    const before = (await rows()).length;
    const text = 'hello, this is not a photo at all, just some words in a body '.repeat(3);
    for (const [label, headers] of [
      ['text/plain', { ...auth(), 'content-type': 'text/plain' }],
      ['octet-stream', { ...auth(), 'content-type': 'application/octet-stream' }],
      ['no Content-Type', auth()],
      ['JSON', { ...auth(), 'content-type': 'application/json' }],
      ['form-urlencoded', { ...auth(), 'content-type': 'application/x-www-form-urlencoded' }],
    ] as const) {
      const res = await post(photosUrl(), headers, label === 'JSON' ? '{"file":"x"}' : text);
      assert.equal(res.status, 415, `${label}: ${res.body}`);
      const { error } = JSON.parse(res.body) as { error: { code: string; message: string } };
      assert.equal(error.code, 'unsupported_media_type');
      assert.match(error.message, /JPEG, PNG, WebP, TIFF, GIF, AVIF, HEIC\/HEIF/, label);
      assert.match(error.message, /application\/octet-stream/, label);
      assert.match(error.message, /multipart\/form-data with the image in field "file"/, label);
      if (label === 'form-urlencoded') assert.match(error.message, /curl --data-binary sends without -H/);
    }
    assert.equal((await rows()).length, before, 'no photo for a refused body');
  });

  it('keeps the route body limit for every Content-Type, and other routes still read JSON', async () => {
    const big = Buffer.concat([photo('jpg/gps/DSCN0010.jpg'), Buffer.alloc(UPLOAD_MAX_BYTES)]);
    for (const headers of [{ ...auth(), 'content-type': 'application/octet-stream' }, auth(), { ...auth(), 'content-type': 'application/x-www-form-urlencoded' }]) {
      const res = await post(photosUrl(), headers, big).catch((err: Error) => ({ status: -1, body: err.message, headers: {} }));
      assert.equal(res.status, 413, res.body);
    }
    // The check endpoint parses JSON as usual, within its own 128 KiB.
    const ok = await check([sha256(Buffer.from('x'))]);
    assert.equal(ok.status, 200);
    const tooBig = await post(`${stack.apiUrl}/v1/photos/check`, { ...auth(), 'content-type': 'application/json' }, JSON.stringify({ checksums: ['a'.repeat(140_000)] }));
    assert.equal(tooBig.status, 413, tooBig.body);
  });

  it('POST /v1/photos/check: known, unknown and malformed checksums, hex or base64, in request order', async () => {
    const known = distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), 'known');
    const id = await stack.uploadOk(known);
    assert.equal(await stack.waitFinal(id), 'complete');
    const unknown = sha256(Buffer.from('never uploaded'));
    const knownHex = sha256(known);

    const res = await check([knownHex.toUpperCase(), unknown, b64(knownHex), b64(unknown).replace(/=$/, '')]);
    assert.equal(res.status, 200);
    const { results } = (await res.json()) as { results: { checksum: string; sha256: string; exists: boolean; photoId?: string; status?: string }[] };
    assert.deepEqual(results, [
      { checksum: knownHex.toUpperCase(), sha256: knownHex, exists: true, photoId: id, status: 'complete' },
      { checksum: unknown, sha256: unknown, exists: false },
      { checksum: b64(knownHex), sha256: knownHex, exists: true, photoId: id, status: 'complete' },
      { checksum: b64(unknown).replace(/=$/, ''), sha256: unknown, exists: false },
    ]);

    // Another tenant's photo is not known to this one.
    const other = await newTenant(stack, 'other');
    const theirs = (await (await check([knownHex], other.key)).json()) as { results: { exists: boolean }[] };
    assert.deepEqual(theirs.results.map((r) => r.exists), [false]);

    // Malformed entries: 400 naming the entry.
    for (const [checksums, pattern] of [
      [[knownHex, 'abc'], /checksums\[1\]: "abc"/],
      [[knownHex, unknown, 42], /checksums\[2\]: a number/],
      [[`${knownHex}00`], /checksums\[0\]/],
      [['z'.repeat(64)], /checksums\[0\]/],
      [[], /1 to 1000/],
      [Array.from({ length: 1_001 }, () => unknown), /1001 entries/],
    ] as const) {
      const bad = await check(checksums);
      assert.equal(bad.status, 400);
      const { error } = (await bad.json()) as { error: { code: string; message: string } };
      assert.match(error.message, pattern);
    }
    assert.equal((await check(Array.from({ length: 1_000 }, () => unknown))).status, 200, '1,000 checksums are fine');
    const notAList = await fetch(`${stack.apiUrl}/v1/photos/check`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: '{"checksum":"x"}' });
    assert.equal(notAList.status, 400);
  });

  it('a checksum that does not match the body is 422 and nothing is stored (no row, no Redis key)', async () => {
    const bytes = distinctJpeg(photo('jpg/gps/DSCN0012.jpg'), 'mismatch');
    const wrong = sha256(Buffer.concat([bytes, Buffer.from('x')]));
    const rowsBefore = (await rows()).length;
    const keysBefore = (await blobKeys()).length;
    const declarations: Record<string, string>[] = [
      { 'x-content-sha256': wrong },
      { 'x-content-sha256': b64(wrong) },
      { digest: `SHA-256=${b64(wrong)}` },
      { 'repr-digest': `sha-256=:${b64(wrong)}:` },
    ];
    for (const headers of declarations) {
      const res = await post(photosUrl(), { ...auth(), 'content-type': 'application/octet-stream', ...headers }, bytes);
      assert.equal(res.status, 422, `${JSON.stringify(headers)}: ${res.body}`);
      assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, 'checksum_mismatch');
    }
    assert.equal((await rows()).length, rowsBefore, 'no row');
    assert.equal((await blobKeys()).length, keysBefore, 'no Redis key');
    // Two declarations that disagree, or one that cannot be read: 400.
    const conflicting = await post(photosUrl(), { ...auth(), 'x-content-sha256': sha256(bytes), 'repr-digest': `sha-256=:${b64(wrong)}:` }, bytes);
    assert.equal(conflicting.status, 400, conflicting.body);
    const unreadable = await post(photosUrl(), { ...auth(), 'x-content-sha256': 'not-a-checksum' }, bytes);
    assert.equal(unreadable.status, 400, unreadable.body);
    assert.equal((JSON.parse(unreadable.body) as { error: { code: string } }).error.code, 'invalid_checksum');
  });

  it('a checked upload is accepted with its hash at once, and the same content again is answered with that photo (200, nothing queued)', async () => {
    const bytes = distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), 'checked');
    const hex = sha256(bytes);
    const first = await post(photosUrl(), { ...auth(), 'content-type': 'application/octet-stream', 'repr-digest': `sha-256=:${b64(hex)}:` }, bytes);
    assert.equal(first.status, 202, first.body);
    const { id } = JSON.parse(first.body) as { id: string };
    // Known from the moment it is accepted, before ingest hashed it.
    const checked = (await (await check([hex])).json()) as { results: { exists: boolean; photoId: string; status: string }[] };
    assert.equal(checked.results[0]?.exists, true);
    assert.equal(checked.results[0]?.photoId, id);
    assert.ok(['queued', 'processing', 'complete'].includes(checked.results[0]?.status ?? ''), checked.results[0]?.status);

    const rowsBefore = (await rows()).length;
    const declarations: Record<string, string>[] = [{ 'x-content-sha256': hex }, { digest: `sha-256=${b64(hex)}, md5=AAAA` }, { 'repr-digest': `sha-512=:AAAA:, sha-256=:${b64(hex)}:` }];
    for (const headers of declarations) {
      const again = await post(photosUrl(), { ...auth(), 'content-type': 'image/jpeg', ...headers }, bytes);
      assert.equal(again.status, 200, again.body);
      const body = JSON.parse(again.body) as { id: string; status: string; statusUrl: string; duplicate: boolean };
      assert.equal(body.id, id);
      assert.equal(body.duplicate, true);
      assert.equal(body.statusUrl, `/v1/photos/${id}`);
      assert.equal(again.headers.location, `/v1/photos/${id}`);
    }
    // Multipart, with the checksum as a field before the file.
    const form = new FormData();
    form.append('sha256', hex);
    form.append('file', new Blob([bytes], { type: 'image/jpeg' }), 'again.jpg');
    const multipart = await fetch(photosUrl(), { method: 'POST', headers: auth(), body: form });
    assert.equal(multipart.status, 200);
    assert.equal(((await multipart.json()) as { id: string }).id, id);
    assert.equal((await rows()).length, rowsBefore, 'no new photo for known content');
    assert.equal(await stack.waitFinal(id), 'complete');
    // A plain upload (no checksum) of the same bytes still goes the old way: accepted, then a duplicate.
    const plain = await stack.uploadOk(bytes);
    assert.equal(await stack.waitFinal(plain), 'duplicate');
  });

  it('concurrent checked uploads of the same bytes: one photo, every other answer names it', async () => {
    const bytes = distinctJpeg(photo('jpg/gps/DSCN0012.jpg'), 'race');
    const hex = sha256(bytes);
    const answers = await Promise.all(Array.from({ length: 6 }, () => post(photosUrl(), { ...auth(), 'x-content-sha256': hex }, bytes)));
    const accepted = answers.filter((a) => a.status === 202);
    assert.equal(accepted.length, 1, answers.map((a) => `${a.status} ${a.body}`).join('\n'));
    const id = (JSON.parse(accepted[0]!.body) as { id: string }).id;
    for (const a of answers.filter((x) => x.status !== 202)) {
      assert.equal(a.status, 200, a.body);
      assert.equal((JSON.parse(a.body) as { id: string }).id, id);
    }
    const mine = (await rows()).filter((r) => r.sha256 === hex);
    assert.deepEqual(mine.map((r) => r.id), [id]);
    assert.equal(await stack.waitFinal(id), 'complete');
  });
});
