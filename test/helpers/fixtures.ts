import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The shared real-photo corpus (../shared/fixtures/photos) and its manifest. */
export const PHOTOS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'shared', 'fixtures', 'photos');

export interface ManifestRow {
  file: string;
  bytes: number;
  format: string;
  width: number;
  height: number;
  orientation: number | null;
  exif: boolean;
  gpsLat: number | null;
  gpsLon: number | null;
  makeModel: string;
  nearestCity: string;
  expect: 'complete' | 'failed';
}

export function readManifest(): ManifestRow[] {
  const lines = readFileSync(join(PHOTOS_DIR, 'manifest.tsv'), 'utf8').trim().split('\n');
  const header = (lines.shift() ?? '').split('\t');
  const col = (name: string) => header.indexOf(name);
  const num = (v: string | undefined) => (v === undefined || v === '' ? null : Number(v));
  return lines.map((line) => {
    const c = line.split('\t');
    return {
      file: c[col('file')] ?? '',
      bytes: Number(c[col('bytes')]),
      format: c[col('format')] ?? '',
      width: Number(c[col('width')]),
      height: Number(c[col('height')]),
      orientation: num(c[col('orientation')]),
      exif: c[col('exif')] === 'yes',
      gpsLat: num(c[col('gps_lat')]),
      gpsLon: num(c[col('gps_lon')]),
      makeModel: c[col('make_model')] ?? '',
      nearestCity: c[col('nearest_city')] ?? '',
      expect: (c[col('expect')] ?? 'complete') as 'complete' | 'failed',
    };
  });
}

export function photo(file: string): Buffer {
  return readFileSync(join(PHOTOS_DIR, file));
}

/**
 * The same picture with different bytes: a JPEG comment segment inserted after SOI changes the
 * SHA-256 without changing the image, so dedupe does not skip it.
 */
export function distinctJpeg(jpeg: Buffer, salt: string): Buffer {
  const text = Buffer.from(`photopipe-test:${salt}`);
  const seg = Buffer.alloc(4 + text.length);
  seg[0] = 0xff;
  seg[1] = 0xfe;
  seg.writeUInt16BE(text.length + 2, 2);
  text.copy(seg, 4);
  return Buffer.concat([jpeg.subarray(0, 2), seg, jpeg.subarray(2)]);
}
