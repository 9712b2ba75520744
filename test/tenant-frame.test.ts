import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { ApiKeyRepo } from '../src/db/api-key-repo.js';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { Stack } from './helpers/stack.js';

/** A tenant's own polaroid frame: uploaded once, used for that tenant's photos only. */
describe('tenant frame', () => {
  let stack: Stack;
  let otherKey: string;

  before(async () => {
    stack = await Stack.start({ workers: 'one' });
    otherKey = (await new ApiKeyRepo(stack.db).create(`${stack.tenant}-other`)).key;
  });

  after(async () => {
    await stack?.stop();
  });

  const putFrame = (body: Buffer, query: string, contentType = 'image/png') =>
    fetch(`${stack.apiUrl}/v1/frame${query}`, { method: 'PUT', headers: stack.headers({ 'content-type': contentType }), body });

  const pixel = async (jpeg: Buffer, x: number, y: number): Promise<[number, number, number]> => {
    const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    const i = (y * info.width + x) * info.channels;
    return [data[i]!, data[i + 1]!, data[i + 2]!];
  };

  it('refuses a frame that is not a PNG or whose window does not fit', async () => {
    const png = await sharp({ create: { width: 300, height: 300, channels: 3, background: '#ff0000' } }).png().toBuffer();
    const notPng = await putFrame(photo('jpg/gps/DSCN0010.jpg'), '', 'image/png');
    assert.equal(notPng.status, 415);
    assert.equal(((await notPng.json()) as { error: { code: string } }).error.code, 'unsupported_media_type');
    const tooBig = await putFrame(png, '?left=13&top=13&width=586&height=497');
    assert.equal(tooBig.status, 400);
    assert.equal(((await tooBig.json()) as { error: { code: string } }).error.code, 'invalid_window');
    const frame = (await (await fetch(`${stack.apiUrl}/v1/frame`, { headers: stack.headers() })).json()) as { frame: { custom: boolean } };
    assert.equal(frame.frame.custom, false);
  });

  it("frames the tenant's photos with its own PNG and window, and nobody else's", async () => {
    const red = await sharp({ create: { width: 700, height: 700, channels: 3, background: '#ff0000' } }).png().toBuffer();
    const res = await putFrame(red, '?left=50&top=50&width=600&height=600');
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { frame: unknown }).frame, { custom: true, width: 700, height: 700, window: { left: 50, top: 50, width: 600, height: 600 } });

    const bytes = distinctJpeg(photo('jpg/gps/DSCN0029.jpg'), `frame-${Date.now()}`);
    const mine = await stack.uploadOk(bytes);
    const theirsRes = await stack.upload(bytes, { key: otherKey });
    const theirs = ((await theirsRes.json()) as { id: string }).id;
    assert.equal(await stack.waitFinal(mine), 'complete');
    assert.equal(await stack.waitFinal(theirs), 'complete');

    const framed = (await stack.s3Object(`${stack.tenant}/${mine}/framed.jpg`)).body;
    const m = await sharp(framed).metadata();
    assert.deepEqual([m.width, m.height], [700, 700]);
    const border = await pixel(framed, 20, 20);
    assert.ok(border[0] > 200 && border[1] < 60 && border[2] < 60, `border is red: ${border}`);
    const inside = await pixel(framed, 350, 350);
    assert.ok(!(inside[0] > 200 && inside[1] < 60 && inside[2] < 60), `the photo covers the window: ${inside}`);

    const other = (await stack.s3Object(`${stack.tenant}-other/${theirs}/framed.jpg`)).body;
    const om = await sharp(other).metadata();
    assert.deepEqual([om.width, om.height], [612, 600]);
    const white = await pixel(other, 5, 5);
    assert.ok(white.every((c) => c > 245), `default frame is white: ${white}`);
  });

  it('goes back to the default frame on DELETE', async () => {
    const del = await fetch(`${stack.apiUrl}/v1/frame`, { method: 'DELETE', headers: stack.headers() });
    assert.equal(del.status, 204);
    const frame = (await (await fetch(`${stack.apiUrl}/v1/frame`, { headers: stack.headers() })).json()) as { frame: { custom: boolean; width: number } };
    assert.deepEqual([frame.frame.custom, frame.frame.width], [false, 612]);
  });
});
