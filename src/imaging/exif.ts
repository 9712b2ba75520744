import exifr from 'exifr';

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
}

export interface ExifResult {
  exif: NormalisedExif;
  /** Everything exifr read, made safe for a jsonb column (no NUL bytes, no binary, bounded size). */
  raw: Record<string, unknown> | null;
}

const EMPTY: NormalisedExif = { make: null, model: null, takenAt: null, orientation: null, gps: null };

/**
 * Reads EXIF/TIFF/GPS with exifr. Broken or hostile EXIF never fails the photo: what cannot be
 * read is left out, absurd values (latitude 200, 1 MB strings) are dropped.
 */
export async function extractExif(input: Buffer): Promise<ExifResult> {
  let out: Record<string, unknown> | undefined;
  try {
    out = (await exifr.parse(input, {
      tiff: true,
      exif: true,
      gps: true,
      ifd1: false,
      interop: false,
      xmp: false,
      icc: false,
      iptc: false,
      jfif: false,
      ihdr: false,
      makerNote: false,
      userComment: false,
      translateKeys: true,
      translateValues: false,
      reviveValues: true,
      mergeOutput: true,
    })) as Record<string, unknown> | undefined;
  } catch {
    return { exif: { ...EMPTY }, raw: null };
  }
  if (!out || typeof out !== 'object') return { exif: { ...EMPTY }, raw: null };
  return { exif: normalise(out), raw: sanitise(out, 0) as Record<string, unknown> };
}

export function normalise(o: Record<string, unknown>): NormalisedExif {
  const orientation = typeof o.Orientation === 'number' && Number.isInteger(o.Orientation) && o.Orientation >= 1 && o.Orientation <= 8 ? o.Orientation : null;
  return {
    make: cleanString(o.Make),
    model: cleanString(o.Model),
    takenAt: exifDate(o.DateTimeOriginal ?? o.CreateDate ?? o.ModifyDate, o.OffsetTimeOriginal ?? o.OffsetTime),
    orientation,
    gps: gpsFix(o),
  };
}

function gpsFix(o: Record<string, unknown>): GpsFix | null {
  const lat = o.latitude;
  const lon = o.longitude;
  if (typeof lat !== 'number' || typeof lon !== 'number' || !Number.isFinite(lat) || !Number.isFinite(lon)) return null;
  if (Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
  let alt: number | null = null;
  if (typeof o.GPSAltitude === 'number' && Number.isFinite(o.GPSAltitude) && Math.abs(o.GPSAltitude) < 100_000) {
    alt = o.GPSAltitudeRef === 1 ? -o.GPSAltitude : o.GPSAltitude;
  }
  return { lat, lon, alt };
}

function cleanString(v: unknown): string | null {
  if (typeof v !== 'string') return null;
  // eslint-disable-next-line no-control-regex
  const s = v.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return s.length === 0 ? null : s.slice(0, 200);
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

function sanitise(v: unknown, depth: number): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') {
    const s = v.replaceAll('\u0000', '');
    return s.length > MAX_STRING ? `${s.slice(0, MAX_STRING)}…` : s;
  }
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
      out[k.replaceAll('\u0000', '').slice(0, 100)] = sanitise(x, depth + 1);
    }
    return out;
  }
  return null;
}
