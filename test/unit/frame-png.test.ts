import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { checkFramePng, FramePngError, type FramePngProblem } from '../../src/imaging/frame-png.js';

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td) >>> 0);
  return Buffer.concat([len, td, crc]);
}

function ihdr(width: number, height: number): Buffer {
  const d = Buffer.alloc(13);
  d.writeUInt32BE(width, 0);
  d.writeUInt32BE(height, 4);
  d.set([8, 2, 0, 0, 0], 8);
  return chunk('IHDR', d);
}

async function refused(png: Buffer, problem: FramePngProblem, maxSidePx = 4096): Promise<FramePngError> {
  const err = await checkFramePng(png, { maxSidePx }).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof FramePngError, `expected a refusal (${problem}), got ${String(err)}`);
  assert.equal(err.problem, problem);
  return err;
}

describe('frame PNG check', async () => {
  const good = await sharp({ create: { width: 320, height: 200, channels: 4, background: { r: 200, g: 30, b: 30, alpha: 0.5 } } }).png({ compressionLevel: 1 }).toBuffer();
  const signature = good.subarray(0, 8);
  const idatAt = good.indexOf('IDAT') - 4;
  const idatLength = good.readUInt32BE(idatAt);

  it('accepts a good PNG and gives its size', async () => {
    assert.deepEqual(await checkFramePng(good, { maxSidePx: 4096 }), { width: 320, height: 200 });
    assert.deepEqual(await checkFramePng(good, { maxSidePx: 320 }), { width: 320, height: 200 });
  });

  it('refuses a PNG whose header is fine and whose image data is not', async () => {
    await refused(good.subarray(0, Math.floor(good.length * 0.7)), 'corrupt');
    const crc = Buffer.from(good);
    crc[idatAt + 8 + 5]! ^= 0x01;
    await refused(crc, 'corrupt');
    const data = Buffer.from(good);
    for (let i = idatAt + 8 + 8; i < idatAt + 8 + idatLength; i += 3) data[i]! ^= 0xa5;
    data.writeUInt32BE(crc32(data.subarray(idatAt + 4, idatAt + 8 + idatLength)) >>> 0, idatAt + 8 + idatLength);
    const e = await refused(data, 'corrupt');
    assert.doesNotMatch(e.message, /vips|libpng/);
  });

  it('refuses dimensions over the limit from the header, before decoding (a PNG bomb)', async () => {
    const bomb = Buffer.concat([signature, ihdr(1_000_000, 1_000_000), chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])), chunk('IEND', Buffer.alloc(0))]);
    const started = performance.now();
    const e = await refused(bomb, 'too_large');
    assert.ok(performance.now() - started < 500);
    assert.match(e.message, /1000000x1000000, above the limit of 4096x4096/);
    await refused(good, 'too_large', 319);
  });

  it('refuses what is not a PNG', async () => {
    const jpeg = await sharp(good).jpeg().toBuffer();
    for (const b of [jpeg, Buffer.alloc(0), signature, Buffer.from('GIF89a'), Buffer.concat([signature, Buffer.alloc(40)])]) {
      const err = await checkFramePng(b, { maxSidePx: 4096 }).catch((e: unknown) => e);
      assert.ok(err instanceof FramePngError && (err.problem === 'not_png' || err.problem === 'corrupt'), String(err));
    }
    await refused(jpeg, 'not_png');
  });
});
