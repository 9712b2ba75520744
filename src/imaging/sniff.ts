/** Image formats photopipe accepts, told apart by their first bytes (never by Content-Type or file name). */
export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'tiff' | 'gif' | 'avif' | 'heif';

export const CONTENT_TYPES: Record<ImageFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  tiff: 'image/tiff',
  gif: 'image/gif',
  avif: 'image/avif',
  heif: 'image/heic',
};

export const EXTENSIONS: Record<ImageFormat, string> = {
  jpeg: 'jpg',
  png: 'png',
  webp: 'webp',
  tiff: 'tiff',
  gif: 'gif',
  avif: 'avif',
  heif: 'heic',
};

const HEIF_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'hevm', 'hevs', 'mif1', 'msf1', 'mif2']);
const AVIF_BRANDS = new Set(['avif', 'avis']);

/** Bytes needed to recognise every supported format. */
export const SNIFF_BYTES = 64;

export function sniffImageFormat(head: Uint8Array): ImageFormat | null {
  const b = head;
  const at = (i: number) => b[i] ?? -1;
  const ascii = (start: number, len: number) => String.fromCharCode(...b.subarray(start, start + len));
  if (at(0) === 0xff && at(1) === 0xd8 && at(2) === 0xff) return 'jpeg';
  if (at(0) === 0x89 && ascii(1, 3) === 'PNG' && at(4) === 0x0d && at(5) === 0x0a) return 'png';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 4) === 'WEBP') return 'webp';
  if ((at(0) === 0x49 && at(1) === 0x49 && at(2) === 0x2a && at(3) === 0x00) || (at(0) === 0x4d && at(1) === 0x4d && at(2) === 0x00 && at(3) === 0x2a)) return 'tiff';
  if (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a') return 'gif';
  if (b.length >= 12 && ascii(4, 4) === 'ftyp') {
    // ISO-BMFF: the major brand, then compatible brands up to the box size.
    const boxSize = Math.min(((at(0) << 24) | (at(1) << 16) | (at(2) << 8) | at(3)) >>> 0, b.length);
    const brands = [ascii(8, 4)];
    for (let i = 16; i + 4 <= boxSize; i += 4) brands.push(ascii(i, 4));
    if (brands.some((x) => AVIF_BRANDS.has(x))) return 'avif';
    if (brands.some((x) => HEIF_BRANDS.has(x))) return 'heif';
  }
  return null;
}
