import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { distinctJpeg, photo, PLACE_DIFFERENCES, readManifest, type ManifestRow } from './helpers/fixtures.js';
import { Stack, waitFor, type PhotoView } from './helpers/stack.js';

/**
 * The whole pipeline on real services: every photo of the shared corpus goes through the
 * API, RabbitMQ, the workers, Redis, Postgres and S3, and the outcome is checked in each.
 */
describe('end-to-end pipeline', () => {
  let stack: Stack;
  const manifest = readManifest();
  const ids = new Map<string, string>(); // fixture file -> photo id

  before(async () => {
    stack = await Stack.start({ workers: 'each' });
    // Upload the whole corpus with a little concurrency, as a phone app syncing would.
    const t0 = Date.now();
    const queue = [...manifest];
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        for (let row = queue.shift(); row; row = queue.shift()) {
          const contentType = row.format === 'heif' ? 'image/heic' : row.format === 'tiff' ? 'image/tiff' : 'image/jpeg';
          ids.set(row.file, await stack.uploadOk(photo(row.file), { contentType, filename: row.file.split('/').pop() }));
        }
      }),
    );
    await stack.waitAllFinal([...ids.values()], 240_000);
    const seconds = (Date.now() - t0) / 1000;
    console.log(`# e2e: ${ids.size} fixture photos (JPEG, HEIC, TIFF) uploaded and final in ${seconds.toFixed(1)} s: ${(ids.size / seconds).toFixed(1)} photos/s`);
  });

  after(async () => {
    await stack?.stop();
  });

  const view = async (row: ManifestRow): Promise<PhotoView> => {
    const id = ids.get(row.file);
    assert.ok(id, `uploaded ${row.file}`);
    const res = await stack.getPhoto(id);
    assert.equal(res.status, 200);
    return res.body;
  };

  it('ends every photo in the state the manifest expects', async () => {
    for (const row of manifest) {
      const v = await view(row);
      assert.equal(v.status, row.expect, `${row.file}: ${JSON.stringify(v.error)}`);
    }
  });

  it('records file info and the EXIF fields of the manifest', async () => {
    for (const row of manifest.filter((r) => r.expect === 'complete')) {
      const v = await view(row);
      assert.equal(v.file?.width, row.width, `${row.file} width`);
      assert.equal(v.file?.height, row.height, `${row.file} height`);
      assert.equal(v.file?.bytes, row.bytes, `${row.file} bytes`);
      assert.equal(v.file?.originalName, row.file.split('/').pop());
      assert.match(v.sha256 ?? '', /^[0-9a-f]{64}$/);
      if (row.makeModel) {
        // EXIF strings may hold NUL bytes (the manifest keeps them); we store them as spaces.
        // eslint-disable-next-line no-control-regex
        const expected = row.makeModel.replace(/\u0000/g, ' ').replace(/\s+/g, ' ');
        assert.equal(`${v.exif?.make ?? ''} ${v.exif?.model ?? ''}`.trim(), expected, `${row.file} make/model`);
      }
      if (row.orientation !== null && row.format === 'jpeg') assert.equal(v.exif?.orientation, row.orientation, `${row.file} orientation`);
      if (row.gpsLat !== null && row.gpsLon !== null) {
        assert.ok(v.exif?.gps, `${row.file} has GPS`);
        assert.ok(Math.abs(v.exif.gps.lat - row.gpsLat) < 1e-6, `${row.file} lat`);
        assert.ok(Math.abs(v.exif.gps.lon - row.gpsLon) < 1e-6, `${row.file} lon`);
        assert.equal(v.stages.geocode, 'done');
        // The offline geocoder's place: the manifest's, or a documented PPLX difference.
        const want = PLACE_DIFFERENCES[row.file] ?? { geonameId: row.geonameId, name: row.nearestCity };
        const place = v.place as { geonameId: number; name: string; countryCode: string; distanceKm: number } | null;
        assert.equal(place?.geonameId, want.geonameId, `${row.file} place ${JSON.stringify(v.place)}`);
        assert.equal(place?.name, want.name, `${row.file} place name`);
        assert.equal(place?.countryCode, row.country, `${row.file} country`);
        assert.ok(place && place.distanceKm >= 0 && place.distanceKm <= 25, `${row.file} distance`);
      } else {
        assert.equal(v.exif?.gps ?? null, null, `${row.file} has no GPS`);
        assert.equal(v.stages.geocode, 'skipped');
        assert.equal(v.place, null);
      }
    }
  });

  it('stores the original untouched and public renditions without metadata in S3', async () => {
    for (const row of manifest.filter((r) => r.expect === 'complete')) {
      const v = await view(row);
      const id = ids.get(row.file)!;
      assert.ok(v.variants, `${row.file} variants`);
      const prefix = `${stack.tenant}/${id}/`;

      const original = await stack.s3Object(`${prefix}original.${row.format === 'jpeg' ? 'jpg' : row.format === 'heif' ? 'heic' : 'tiff'}`);
      assert.ok(original.body.equals(photo(row.file)), `${row.file}: original bytes intact`);
      // The presigned URL works without credentials, and only for a while.
      const signed = await fetch(v.variants.original.url);
      assert.equal(signed.status, 200);
      assert.match(v.variants.original.url, /X-Amz-Signature=/);

      const framed = await stack.s3Object(`${prefix}framed.jpg`);
      assert.equal(framed.contentType, 'image/jpeg');
      assert.match(framed.cacheControl ?? '', /max-age=\d+/);
      const fm = await sharp(framed.body).metadata();
      assert.deepEqual([fm.format, fm.width, fm.height], ['jpeg', 612, 600], `${row.file} framed size`);
      assert.equal(fm.exif, undefined, `${row.file}: framed carries no EXIF`);
      assert.equal(fm.xmp, undefined);

      const thumb = await stack.s3Object(`${prefix}thumbnail.jpg`);
      const tm = await sharp(thumb.body).metadata();
      assert.equal(tm.format, 'jpeg');
      assert.equal(Math.max(tm.width ?? 0, tm.height ?? 0), 320, `${row.file} thumbnail longest side`);
      assert.equal(tm.exif, undefined, `${row.file}: thumbnail carries no EXIF`);

      // Public renditions are reachable by URL without any credentials.
      const pub = await fetch(v.variants.thumbnail.url);
      assert.equal(pub.status, 200);
      assert.ok(Buffer.from(await pub.arrayBuffer()).equals(thumb.body));

      const { rows } = await stack.db.query(`SELECT kind, s3_key, width, height, bytes, content_type FROM photo_variants WHERE photo_id = $1 ORDER BY kind`, [id]);
      assert.deepEqual(rows.map((r) => r.kind), ['framed', 'original', 'thumbnail']);
      const byKind = Object.fromEntries(rows.map((r) => [r.kind, r]));
      assert.equal(byKind.framed.bytes, framed.body.length);
      assert.equal(byKind.thumbnail.width, tm.width);
      assert.equal(byKind.original.bytes, row.bytes);
    }
  });

  it('frames the photo as a polaroid: cover-cropped to 586x497 at (13,13), undistorted, on white', async () => {
    for (const file of ['jpg/gps/DSCN0010.jpg', 'jpg/orientation/portrait_1.jpg', 'jpg/mobile/jolla.jpg']) {
      const { body } = await stack.s3Object(`${stack.tenant}/${ids.get(file)!}/framed.jpg`);
      const framed = await sharp(body).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([framed.info.width, framed.info.height, framed.info.channels], [612, 600, 3]);
      const px = (x: number, y: number) => Array.from(framed.data.subarray((y * 612 + x) * 3, (y * 612 + x) * 3 + 3));
      // The frame around the window is white: left, top and right margins of 13 px, and the wide bottom band.
      for (const [x, y] of [[3, 300], [306, 4], [606, 300], [306, 560], [20, 590], [600, 520]] as const) {
        assert.ok(px(x, y).every((c) => c >= 245), `${file}: frame pixel (${x},${y}) is ${px(x, y)}`);
      }
      // The window holds the photo, cover-cropped from the centre without distortion: it matches a
      // reference crop of the original within JPEG noise.
      // (sharp applies one resize per pipeline, hence the intermediate PNGs.)
      const small = async (img: Buffer) => sharp(img).greyscale().resize(64, 64, { fit: 'fill' }).raw().toBuffer();
      const window = await small(await sharp(body).extract({ left: 13, top: 13, width: 586, height: 497 }).png().toBuffer());
      const reference = await small(await sharp(photo(file)).rotate().resize(586, 497, { fit: 'cover' }).png().toBuffer());
      let diff = 0;
      for (let i = 0; i < window.length; i++) diff += Math.abs(window[i]! - reference[i]!);
      assert.ok(diff / window.length < 6, `${file}: window differs from the reference crop by ${(diff / window.length).toFixed(1)} grey levels per pixel`);
    }
  });

  it('turns orientation 2-8 photos upright', async () => {
    const upright = async (file: string) => {
      const id = ids.get(file)!;
      const { body } = await stack.s3Object(`${stack.tenant}/${id}/thumbnail.jpg`);
      return sharp(body).resize(32, 32, { fit: 'fill' }).greyscale().raw().toBuffer({ resolveWithObject: true });
    };
    for (const kind of ['landscape', 'portrait']) {
      const reference = await upright(`jpg/orientation/${kind}_1.jpg`);
      const rows = manifest.filter((r) => r.file.startsWith(`jpg/orientation/${kind}_`) && r.orientation !== 1);
      assert.ok(rows.length >= 5);
      for (const row of rows) {
        const got = await upright(row.file);
        assert.deepEqual([got.info.width, got.info.height], [reference.info.width, reference.info.height]);
        let diff = 0;
        for (let i = 0; i < got.data.length; i++) diff += Math.abs(got.data[i]! - reference.data[i]!);
        const mean = diff / got.data.length;
        assert.ok(mean < 12, `${row.file} differs from the upright reference by ${mean.toFixed(1)} grey levels per pixel`);
      }
    }
  });

  it('ends a corrupt photo failed with the stage and a reason, dead-lettered, with its upload kept for a replay', async () => {
    const v = await view(manifest.find((r) => r.file === 'jpg/corrupted.jpg')!);
    const id = ids.get('jpg/corrupted.jpg')!;
    assert.equal(v.status, 'failed');
    assert.ok(v.error);
    assert.match(v.error.reason, /corrupt|premature|decode/i);
    assert.ok(['frame', 'thumbnail'].includes(v.error.stage), `failed in ${v.error.stage}`);
    const letters = await stack.amqp(async (ch) => {
      const queue = stack.dlq(v.error!.stage as 'frame');
      const out: string[] = [];
      for (let n = (await ch.checkQueue(queue)).messageCount; n > 0; n--) {
        const m = await ch.get(queue, { noAck: false });
        if (m) out.push(String(m.properties.headers?.['x-photo-id']));
      }
      return out; // closing the connection hands the letters back
    });
    assert.ok(letters.includes(id), 'its dead letter is in the DLQ of the stage that failed');
    // A failed photo keeps its upload for a replay: parked in S3 (FAILED_RETENTION_SECONDS), out of Redis.
    const parked = await waitFor('the failed photo\'s upload to be parked', async () => (await stack.s3Object(`_parked/${id}/raw`).catch(() => null))?.body, 20_000, 200);
    assert.deepEqual(parked, photo('jpg/corrupted.jpg'), 'the raw upload is kept, byte for byte');
    assert.equal(await stack.redis.exists(`${stack.config.REDIS_KEY_PREFIX}blob:${id}:raw`), 0, 'and no longer counts against Redis memory');
  });

  it('deletes the Redis blobs of completed photos', async () => {
    const id = ids.get('jpg/gps/DSCN0010.jpg')!;
    const keys = await stack.redis.keys(`${stack.config.REDIS_KEY_PREFIX}blob:${id}:*`);
    assert.deepEqual(keys, []);
  });

  it('gives a duplicate upload status duplicate with duplicateOf and no further work', async () => {
    const original = ids.get('jpg/exif-org/nikon-e950.jpg')!;
    const dupId = await stack.uploadOk(photo('jpg/exif-org/nikon-e950.jpg'));
    assert.equal(await stack.waitFinal(dupId), 'duplicate');
    const { body } = await stack.getPhoto(dupId);
    assert.equal(body.duplicateOf, original);
    assert.equal(body.variants, null);
    const { rows } = await stack.db.query(`SELECT count(*)::int AS n FROM photo_variants WHERE photo_id = $1`, [dupId]);
    assert.equal(rows[0].n, 0);
  });

  it('processes exactly one of 20 concurrent uploads of the same photo', async () => {
    const bytes = distinctJpeg(photo('jpg/gps/DSCN0025.jpg'), `concurrent-${Date.now()}`);
    const responses = await Promise.all(Array.from({ length: 20 }, () => stack.upload(bytes)));
    assert.deepEqual(responses.map((r) => r.status), Array(20).fill(202));
    const photoIds = await Promise.all(responses.map(async (r) => ((await r.json()) as { id: string }).id));
    const states = await stack.waitAllFinal(photoIds);
    const complete = [...states].filter(([, s]) => s === 'complete').map(([id]) => id);
    assert.equal(complete.length, 1, `states: ${JSON.stringify([...states.values()])}`);
    assert.equal([...states.values()].filter((s) => s === 'duplicate').length, 19);
    const { rows } = await stack.db.query(`SELECT DISTINCT duplicate_of FROM photos WHERE id = ANY($1::uuid[]) AND status = 'duplicate'`, [photoIds]);
    assert.deepEqual(rows.map((r) => r.duplicate_of), complete);
    const variants = await stack.db.query(`SELECT DISTINCT photo_id FROM photo_variants WHERE photo_id = ANY($1::uuid[])`, [photoIds]);
    assert.deepEqual(variants.rows.map((r) => r.photo_id), complete);
  });
});
