import exifr from 'exifr';
import { validGps } from '../places/gps-validator.js';
import { dbText, truncateText, wellFormed } from '../shared/text.js';

export interface GpsFix {
  lat: number;
  lon: number;
  alt: number | null;
}

export interface NormalisedExif {
  make: string | null;
  model: string | null;
  /** Camera-local wall-clock time as written ("2008-10-22T16:29:49"), with the offset when the file has one. */
  takenAt: string | null;
  orientation: number | null;
  gps: GpsFix | null;
  /** Why GPS tags the file has are not used as a position ((0,0), out of range, a missing hemisphere); null otherwise. */
  gpsNote: string | null;
}

export interface ExifResult {
  exif: NormalisedExif;
  /** Everything exifr read, made safe for a jsonb column (well-formed strings and keys, no NUL bytes, no binary, bounded size). */
  raw: Record<string, unknown> | null;
}

const EMPTY: NormalisedExif = { make: null, model: null, takenAt: null, orientation: null, gps: null, gpsNote: null };

/**
 * Reads the EXIF blocks (IFD0/TIFF, Exif, GPS, Interop, UserComment) with exifr. Left out: IFD1,
 * which describes the embedded preview thumbnail rather than the photo (and whose tags would
 * overwrite IFD0's in the merged output), and MakerNote, an opaque vendor blob. XMP, IPTC and ICC
 * are not EXIF. Broken or hostile EXIF never fails the photo: what cannot be read is left out,
 * absurd values (latitude 200, 1 MB strings) are dropped, and every string is one Postgres stores
 * (UTF-16 from a file can hold lone surrogates; a length limit must not cut a pair in half).
 */
export async function extractExif(input: Buffer): Promise<ExifResult> {
  let out: Record<string, unknown> | undefined;
  try {
    out = (await exifr.parse(input, {
      tiff: true,
      exif: true,
      gps: true,
      ifd1: false,
      interop: true,
      xmp: false,
      icc: false,
      iptc: false,
      jfif: false,
      ihdr: false,
      makerNote: false,
      userComment: true,
      translateKeys: true,
      translateValues: false,
      reviveValues: true,
      mergeOutput: true,
    })) as Record<string, unknown> | undefined;
  } catch {
    return { exif: { ...EMPTY }, raw: null };
  }
  if (!out || typeof out !== 'object') return { exif: { ...EMPTY }, raw: null };
  if (ArrayBuffer.isView(out.userComment)) {
    const comment = decodeUserComment(out.userComment);
    delete out.userComment;
    if (comment) out.UserComment = comment;
  }
  return { exif: normalise(out), raw: sanitise(out, 0) as Record<string, unknown> };
}

export function normalise(o: Record<string, unknown>): NormalisedExif {
  const orientation = typeof o.Orientation === 'number' && Number.isInteger(o.Orientation) && o.Orientation >= 1 && o.Orientation <= 8 ? o.Orientation : null;
  return {
    make: cleanString(o.Make),
    model: cleanString(o.Model),
    takenAt: exifDate(o.DateTimeOriginal ?? o.CreateDate ?? o.ModifyDate, o.OffsetTimeOriginal ?? o.OffsetTime),
    orientation,
    ...gpsFix(o),
  };
}

/**
 * The photo's position, if its GPS tags give a usable one (validGps: not (0,0), in range, with
 * its hemisphere refs); otherwise a note saying why not, when the file has GPS tags at all.
 */
function gpsFix(o: Record<string, unknown>): { gps: GpsFix | null; gpsNote: string | null } {
  const hasGps = o.latitude !== undefined || o.longitude !== undefined || o.GPSLatitude !== undefined || o.GPSLongitude !== undefined;
  if (!hasGps) return { gps: null, gpsNote: null };
  // Hemisphere refs are checked when the file writes them (a contradicting or half-missing pair
  // means the position is a guess); a file with neither is read as exifr reads it.
  const refs = o.GPSLatitudeRef !== undefined || o.GPSLongitudeRef !== undefined ? { latRef: o.GPSLatitudeRef, lonRef: o.GPSLongitudeRef } : undefined;
  const check = validGps(o.latitude, o.longitude, refs);
  if (!check.ok) return { gps: null, gpsNote: check.note };
  const { lat, lon } = check;
  let alt: number | null = null;
  if (typeof o.GPSAltitude === 'number' && Number.isFinite(o.GPSAltitude) && Math.abs(o.GPSAltitude) < 100_000) {
    alt = belowSeaLevel(o.GPSAltitudeRef) ? -o.GPSAltitude : o.GPSAltitude;
  }
  return { gps: { lat, lon, alt }, gpsNote: null };
}

/**
 * UserComment is an 8-byte character code followed by the text: "ASCII\0\0\0", "UNICODE\0" (UTF-16
 * in the file's byte order, guessed here from where the zero bytes fall), "JIS" or eight zero
 * bytes (undefined: read as UTF-8). Cameras often fill it with zeros or spaces: that is no comment.
 */
export function decodeUserComment(view: ArrayBufferView): string | null {
  const bytes = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
  if (bytes.length <= 8) return null;
  const code = bytes.subarray(0, 8).toString('latin1').replace(/\0+$/, '');
  let text = bytes.subarray(8);
  let s: string;
  if (code === 'UNICODE') {
    if (text.length % 2 === 1) text = text.subarray(0, text.length - 1);
    let zerosAtEven = 0;
    for (let i = 0; i < text.length; i += 2) if (text[i] === 0) zerosAtEven++;
    const bigEndian = zerosAtEven > text.length / 4;
    s = bigEndian ? Buffer.from(text).swap16().toString('utf16le') : text.toString('utf16le');
  } else {
    s = text.toString(code === 'ASCII' ? 'latin1' : 'utf8');
  }
  return cleanString(s);
}

/** GPSAltitudeRef is a BYTE: 1 = below sea level. exifr gives it as a one-byte array, some writers as a number. */
function belowSeaLevel(ref: unknown): boolean {
  if (typeof ref === 'number') return ref === 1;
  if (ArrayBuffer.isView(ref)) return new Uint8Array(ref.buffer, ref.byteOffset, ref.byteLength)[0] === 1;
  return Array.isArray(ref) && ref[0] === 1;
}

/** A display string: well-formed, control characters as spaces, whitespace collapsed, at most 200 code units. */
function cleanString(v: unknown): string | null {
  if (typeof v !== 'string') return null;
  // eslint-disable-next-line no-control-regex
  const s = wellFormed(v).replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return s.length === 0 ? null : truncateText(s, 200);
}

function exifDate(v: unknown, offset: unknown): string | null {
  if (!(v instanceof Date) || Number.isNaN(v.getTime())) return null;
  // exifr builds the Date from the camera's wall clock in the process time zone; read it back the same way.
  const p = (n: number) => String(n).padStart(2, '0');
  const year = v.getFullYear();
  if (year < 1900 || year > 2200) return null;
  const base = `${year}-${p(v.getMonth() + 1)}-${p(v.getDate())}T${p(v.getHours())}:${p(v.getMinutes())}:${p(v.getSeconds())}`;
  return typeof offset === 'string' && /^[+-]\d{2}:\d{2}$/.test(offset.trim()) ? `${base}${offset.trim()}` : base;
}

const MAX_DEPTH = 4;
const MAX_KEYS = 300;
const MAX_STRING = 2_000;
const MAX_ARRAY = 64;
const MAX_KEY = 100;

/**
 * exifr's output as JSON Postgres accepts: bounded depth, key count, array length and string
 * length (MAX_STRING code units, the ellipsis included); every string and key through dbText.
 */
export function sanitise(v: unknown, depth = 0): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return dbText(v, MAX_STRING, '…');
  // exifr reports blocks it could not read as Error objects (`errors`): keep why, as text.
  if (v instanceof Error) return dbText(v.message, MAX_STRING, '…');
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
  if (ArrayBuffer.isView(v)) return { binaryBytes: v.byteLength };
  if (depth >= MAX_DEPTH) return null;
  if (Array.isArray(v)) return v.slice(0, MAX_ARRAY).map((x) => sanitise(x, depth + 1));
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    let n = 0;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (n++ >= MAX_KEYS) break;
      out[dbText(k, MAX_KEY)] = sanitise(x, depth + 1);
    }
    return out;
  }
  return null;
}
