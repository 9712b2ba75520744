import { join } from 'node:path';
import { distinctJpeg, photo, PHOTOS_DIR, readManifest } from '../../test/helpers/fixtures.js';

/**
 * The photos every throughput figure uses: the fixture JPEGs that are typical camera and phone
 * photos and are expected to complete. Left out: corrupted.jpg (fails on purpose), the
 * jpg/invalid/ set (broken EXIF, tiny), the 100-px camera-model samples in jpg/ (EXIF test
 * files, not photos), HEIC (decoded by a slow wasm decoder in ingest, measured elsewhere), TIFF.
 */
export const CORPUS_DIRS = ['jpg/gps/', 'jpg/exif-org/', 'jpg/orientation/', 'jpg/hdr/', 'jpg/mobile/', 'jpg/tests/'] as const;

export interface CorpusPhoto {
  file: string;
  path: string;
  bytes: Buffer;
  width: number;
  height: number;
}

export interface Corpus {
  photos: CorpusPhoto[];
  totalBytes: number;
  megapixels: number;
}

export function loadCorpus(): Corpus {
  const rows = readManifest().filter(
    (r) => r.format === 'jpeg' && r.expect === 'complete' && CORPUS_DIRS.some((d) => r.file.startsWith(d)) && !r.file.endsWith('corrupted.jpg'),
  );
  const photos = rows.map((r) => ({ file: r.file, path: join(PHOTOS_DIR, r.file), bytes: photo(r.file), width: r.width, height: r.height }));
  if (photos.length === 0) throw new Error(`no fixture photos found under ${PHOTOS_DIR}`);
  return {
    photos,
    totalBytes: photos.reduce((s, p) => s + p.bytes.length, 0),
    megapixels: photos.reduce((s, p) => s + (p.width * p.height) / 1e6, 0),
  };
}

/**
 * The corpus's photos of at least minPixels (phone-camera sizes): most of the corpus is 0.3 MP
 * camera samples, where fixed per-photo costs dominate; these show the other end.
 */
export function largePhotos(corpus: Corpus, minPixels = 3_000_000): Corpus {
  const photos = corpus.photos.filter((p) => p.width * p.height >= minPixels);
  return {
    photos,
    totalBytes: photos.reduce((s, p) => s + p.bytes.length, 0),
    megapixels: photos.reduce((s, p) => s + (p.width * p.height) / 1e6, 0),
  };
}

/**
 * n upload bodies cycling through the photos, each with distinct bytes (a JPEG comment segment
 * with the salt), so dedupe never skips one: same pixels, different SHA-256.
 */
export function distinctBodies(photos: readonly Buffer[], n: number, salt: string): Buffer[] {
  return Array.from({ length: n }, (_, i) => distinctJpeg(photos[i % photos.length]!, `${salt}-${i}`));
}

/** n uploads cycling through the corpus (distinctBodies of its photos). */
export function distinctSeries(corpus: Corpus, n: number, salt: string): Buffer[] {
  return distinctBodies(corpus.photos.map((p) => p.bytes), n, salt);
}

/**
 * A real JPEG grown to exactly `size` bytes with comment segments after SOI (a COM segment holds
 * at most 65,533 bytes), for upload bodies of a fixed size that are still valid images.
 */
export function paddedJpeg(jpeg: Buffer, size: number): Buffer {
  let need = size - jpeg.length;
  if (need < 0) throw new Error(`fixture of ${jpeg.length} bytes is larger than ${size}`);
  const segs: Buffer[] = [];
  while (need > 0) {
    // A segment is 4 bytes of header plus 0..65533 of text; never leave a remainder below 4.
    let payload = Math.min(65_533, need - 4);
    if (need - (payload + 4) > 0 && need - (payload + 4) < 4) payload -= 4;
    if (payload < 0) throw new Error(`cannot pad to exactly ${size} bytes`);
    const seg = Buffer.alloc(4 + payload, 0x20);
    seg[0] = 0xff;
    seg[1] = 0xfe;
    seg.writeUInt16BE(payload + 2, 2);
    segs.push(seg);
    need -= seg.length;
  }
  return Buffer.concat([jpeg.subarray(0, 2), ...segs, jpeg.subarray(2)]);
}
