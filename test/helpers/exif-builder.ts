import sharp from 'sharp';

/**
 * Crafted EXIF, assembled byte by byte: a TIFF structure (header, IFD0, Exif IFD, GPS IFD) in
 * either byte order, wrapped in a JPEG APP1 segment inserted right after SOI of a small JPEG made
 * with sharp. Writers such as sharp's withExif() only write what is valid; hostile files are not,
 * so tests build them here: lone surrogates in UTF-16, lying value counts, thousands of tags,
 * IFD pointers that loop.
 */

export type ByteOrder = 'LE' | 'BE';

/** TIFF field types used here. */
export const BYTE = 1;
export const ASCII = 2;
export const SHORT = 3;
export const LONG = 4;
export const RATIONAL = 5;
export const UNDEFINED = 7;
const TYPE_SIZE: Record<number, number> = { [BYTE]: 1, [ASCII]: 1, [SHORT]: 2, [LONG]: 4, [RATIONAL]: 8, [UNDEFINED]: 1 };

/** Tags this file writes by name. */
export const TAG = {
  ImageDescription: 0x010e,
  Make: 0x010f,
  Model: 0x0110,
  Artist: 0x013b,
  XPComment: 0x9c9c,
  ExifIfdPointer: 0x8769,
  GpsIfdPointer: 0x8825,
  UserComment: 0x9286,
  InteropIfdPointer: 0xa005,
  GPSLatitudeRef: 0x0001,
  GPSLatitude: 0x0002,
  GPSLongitudeRef: 0x0003,
  GPSLongitude: 0x0004,
} as const;

/** One IFD entry. `count` overrides the count computed from the value (a file that lies about its size). */
export interface Entry {
  tag: number;
  type: number;
  value: Buffer | number[] | [number, number][];
  count?: number;
}

export interface ExifSpec {
  byteOrder?: ByteOrder;
  ifd0?: Entry[];
  exif?: Entry[];
  gps?: Entry[];
  /** Points the Exif IFD's Interop pointer back at the Exif IFD itself, and IFD0's next-IFD link at IFD0. */
  loopPointers?: boolean;
}

// Value constructors. Strings are given as bytes so that tests decide the encoding exactly.

/** An ASCII field from raw bytes (EXIF says ASCII; readers decode UTF-8), NUL-terminated. */
export const ascii = (tag: number, bytes: Buffer | string): Entry => ({
  tag,
  type: ASCII,
  value: Buffer.concat([typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes, Buffer.from([0])]),
});
export const undefinedBytes = (tag: number, bytes: Buffer): Entry => ({ tag, type: UNDEFINED, value: bytes });
export const bytesField = (tag: number, bytes: Buffer): Entry => ({ tag, type: BYTE, value: bytes });
export const shorts = (tag: number, values: number[]): Entry => ({ tag, type: SHORT, value: values });
export const rationals = (tag: number, values: [number, number][]): Entry => ({ tag, type: RATIONAL, value: values });

/**
 * UTF-16 code units as bytes, lone surrogates included: `Buffer.from(s, 'utf16le')` would keep
 * them too, but this states the intent and does big-endian as well.
 */
export function utf16(units: string | number[], order: ByteOrder): Buffer {
  const codes = typeof units === 'string' ? Array.from({ length: units.length }, (_, i) => units.charCodeAt(i)) : units;
  const out = Buffer.alloc(codes.length * 2);
  codes.forEach((c, i) => (order === 'LE' ? out.writeUInt16LE(c, i * 2) : out.writeUInt16BE(c, i * 2)));
  return out;
}

/** UserComment: an 8-byte character code, then the text. */
export const userComment = {
  unicode: (units: string | number[], order: ByteOrder): Entry => undefinedBytes(TAG.UserComment, Buffer.concat([Buffer.from('UNICODE\0', 'latin1'), utf16(units, order)])),
  ascii: (bytes: Buffer | string): Entry => undefinedBytes(TAG.UserComment, Buffer.concat([Buffer.from('ASCII\0\0\0', 'latin1'), typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes])),
  /** Character code "undefined" (eight zero bytes): readers take the text as UTF-8. */
  undefinedCode: (bytes: Buffer): Entry => undefinedBytes(TAG.UserComment, Buffer.concat([Buffer.alloc(8), bytes])),
};

/** Windows' XP* tags: UCS-2 little-endian in a BYTE field, NUL-terminated. */
export const xpString = (tag: number, units: string | number[]): Entry => bytesField(tag, Buffer.concat([utf16(units, 'LE'), Buffer.alloc(2)]));

/** A GPS IFD for latitude/longitude in degrees, minutes, seconds. */
export function gpsEntries(lat: number, lon: number): Entry[] {
  const dms = (v: number): [number, number][] => {
    const a = Math.abs(v);
    const d = Math.floor(a);
    const m = Math.floor((a - d) * 60);
    const s = Math.round(((a - d) * 60 - m) * 60 * 100);
    return [
      [d, 1],
      [m, 1],
      [s, 100],
    ];
  };
  return [
    ascii(TAG.GPSLatitudeRef, lat >= 0 ? 'N' : 'S'),
    rationals(TAG.GPSLatitude, dms(lat)),
    ascii(TAG.GPSLongitudeRef, lon >= 0 ? 'E' : 'W'),
    rationals(TAG.GPSLongitude, dms(lon)),
  ];
}

function encodeValue(e: Entry, le: boolean): { data: Buffer; count: number } {
  if (Buffer.isBuffer(e.value)) return { data: e.value, count: e.value.length };
  const size = TYPE_SIZE[e.type];
  if (!size) throw new Error(`unsupported type ${e.type}`);
  const values = e.value;
  const data = Buffer.alloc(values.length * size);
  values.forEach((v, i) => {
    if (e.type === RATIONAL) {
      const [n, d] = v as [number, number];
      if (le) {
        data.writeUInt32LE(n, i * 8);
        data.writeUInt32LE(d, i * 8 + 4);
      } else {
        data.writeUInt32BE(n, i * 8);
        data.writeUInt32BE(d, i * 8 + 4);
      }
    } else if (e.type === SHORT) {
      if (le) data.writeUInt16LE(v as number, i * 2);
      else data.writeUInt16BE(v as number, i * 2);
    } else if (e.type === LONG) {
      if (le) data.writeUInt32LE(v as number, i * 4);
      else data.writeUInt32BE(v as number, i * 4);
    } else {
      data.writeUInt8(v as number, i);
    }
  });
  return { data, count: values.length };
}

/** The TIFF structure (what follows "Exif\0\0" in APP1). */
export function tiff(spec: ExifSpec): Buffer {
  const le = (spec.byteOrder ?? 'LE') === 'LE';
  const u16 = (b: Buffer, v: number, at: number) => (le ? b.writeUInt16LE(v, at) : b.writeUInt16BE(v, at));
  const u32 = (b: Buffer, v: number, at: number) => (le ? b.writeUInt32LE(v >>> 0, at) : b.writeUInt32BE(v >>> 0, at));

  const exifEntries = [...(spec.exif ?? [])];
  const gpsList = spec.gps ?? [];
  const ifd0: Entry[] = [...(spec.ifd0 ?? [])];
  // Pointer entries get their offsets once the layout is known.
  const hasExif = exifEntries.length > 0 || spec.loopPointers === true;
  if (hasExif) ifd0.push({ tag: TAG.ExifIfdPointer, type: LONG, value: [0] });
  if (gpsList.length > 0) ifd0.push({ tag: TAG.GpsIfdPointer, type: LONG, value: [0] });
  if (spec.loopPointers) exifEntries.push({ tag: TAG.InteropIfdPointer, type: LONG, value: [0] });

  const ifds = [ifd0, ...(hasExif ? [exifEntries] : []), ...(gpsList.length > 0 ? [gpsList] : [])].map((entries) => [...entries].sort((a, b) => a.tag - b.tag));
  const ifdSize = (n: number) => 2 + n * 12 + 4;
  const offsets: number[] = [];
  let at = 8;
  for (const entries of ifds) {
    offsets.push(at);
    at += ifdSize(entries.length);
  }
  const [ifd0At, ...rest] = offsets;
  const exifAt = hasExif ? rest.shift() : undefined;
  const gpsAt = gpsList.length > 0 ? rest.shift() : undefined;

  // Resolve pointers, then lay out values longer than 4 bytes after the IFDs, word-aligned.
  const pointerValue = (tag: number): number | undefined => {
    if (tag === TAG.ExifIfdPointer) return exifAt;
    if (tag === TAG.GpsIfdPointer) return gpsAt;
    if (tag === TAG.InteropIfdPointer) return exifAt;
    return undefined;
  };
  const encoded = ifds.map((entries) =>
    entries.map((e) => {
      const p = pointerValue(e.tag);
      return encodeValue(p === undefined ? e : { ...e, value: [p] }, le);
    }),
  );
  const dataParts: Buffer[] = [];
  let dataAt = at;
  const valueOffsets = encoded.map((list) =>
    list.map(({ data }) => {
      if (data.length <= 4) return -1;
      const off = dataAt;
      const padded = data.length % 2 === 1 ? Buffer.concat([data, Buffer.alloc(1)]) : data;
      dataParts.push(padded);
      dataAt += padded.length;
      return off;
    }),
  );

  const head = Buffer.alloc(at);
  head.write(le ? 'II' : 'MM', 0, 'latin1');
  u16(head, 42, 2);
  u32(head, ifd0At ?? 8, 4);
  ifds.forEach((entries, i) => {
    let p = offsets[i] ?? 0;
    u16(head, entries.length, p);
    p += 2;
    entries.forEach((e, j) => {
      const { data, count } = encoded[i]![j]!;
      u16(head, e.tag, p);
      u16(head, e.type, p + 2);
      u32(head, e.count ?? count, p + 4);
      const off = valueOffsets[i]![j]!;
      if (off < 0) data.copy(head, p + 8);
      else u32(head, off, p + 8);
      p += 12;
    });
    // Next-IFD link: none, except IFD0 pointing at itself when asked to loop.
    u32(head, i === 0 && spec.loopPointers ? (ifd0At ?? 8) : 0, p);
  });
  return Buffer.concat([head, ...dataParts]);
}

/** An APP1 Exif segment around a TIFF structure. */
export function app1(tiffBytes: Buffer): Buffer {
  const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiffBytes]);
  if (payload.length + 2 > 0xffff) throw new Error(`APP1 payload of ${payload.length} bytes does not fit one segment`);
  const head = Buffer.from([0xff, 0xe1, 0, 0]);
  head.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([head, payload]);
}

/** A JPEG made by sharp (no metadata of its own) with the crafted APP1 inserted right after SOI. */
export async function craftedJpeg(spec: ExifSpec, opts: { width?: number; height?: number; background?: string } = {}): Promise<Buffer> {
  const base = await sharp({ create: { width: opts.width ?? 64, height: opts.height ?? 48, channels: 3, background: opts.background ?? '#3a7ca5' } })
    .jpeg()
    .toBuffer();
  if (base[0] !== 0xff || base[1] !== 0xd8) throw new Error('sharp did not write a JPEG');
  return Buffer.concat([base.subarray(0, 2), app1(tiff(spec)), base.subarray(2)]);
}
