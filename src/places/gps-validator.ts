export type GpsCheck = { ok: true; lat: number; lon: number } | { ok: false; note: string };

/** The hemisphere letters of the photo's EXIF, when the caller has them (GPSLatitudeRef, GPSLongitudeRef). */
export interface GpsRefs {
  latRef: unknown;
  lonRef: unknown;
}

/**
 * Decides whether a photo's coordinates can be geocoded. Never throws: whatever a camera or a
 * hostile file wrote ends as { ok: false, note } and the photo simply has no place.
 *
 * (0, 0) is rejected because cameras without a satellite fix write zeros: taken at face value
 * every such photo would be placed in the Gulf of Guinea. A real photo at exactly 0°, 0° (a buoy)
 * is the price of that.
 *
 * refs is optional because exifr already folds GPSLatitudeRef/GPSLongitudeRef into the sign of
 * latitude/longitude. But when a ref is missing exifr silently reads the value as north/east, so a
 * caller that has the raw tags should pass them: a missing or contradicting ref means the
 * hemisphere is a guess, and a guess can put a photo on another continent.
 */
export function validGps(lat: unknown, lon: unknown, refs?: GpsRefs): GpsCheck {
  if (lat === undefined || lat === null || lon === undefined || lon === null) {
    return { ok: false, note: lat == null && lon == null ? 'no GPS coordinates' : `GPS ${lat == null ? 'latitude' : 'longitude'} missing` };
  }
  if (typeof lat !== 'number' || typeof lon !== 'number') {
    return { ok: false, note: `GPS coordinates are not numbers (${describe(lat)}, ${describe(lon)})` };
  }
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return { ok: false, note: `GPS coordinates are not finite (${lat}, ${lon})` };
  if (Math.abs(lat) > 90) return { ok: false, note: `GPS latitude ${lat} is out of range (-90..90)` };
  if (Math.abs(lon) > 180) return { ok: false, note: `GPS longitude ${lon} is out of range (-180..180)` };
  // Within a centimetre of 0,0: DMS zeros from a camera without a fix, not a position.
  if (Math.abs(lat) < 1e-7 && Math.abs(lon) < 1e-7) return { ok: false, note: 'GPS 0,0 (written by cameras without a fix), not a position' };
  if (refs) {
    const refNote = checkRef(refs.latRef, lat, 'N', 'S', 'GPSLatitudeRef') ?? checkRef(refs.lonRef, lon, 'E', 'W', 'GPSLongitudeRef');
    if (refNote) return { ok: false, note: refNote };
  }
  // + 0 turns -0 into 0, so equal positions give equal cache keys and log lines.
  return { ok: true, lat: lat + 0, lon: lon + 0 };
}

function checkRef(ref: unknown, value: number, positive: string, negative: string, tag: string): string | null {
  const letter = typeof ref === 'string' ? ref.trim().toUpperCase() : null;
  if (letter !== positive && letter !== negative) {
    return ref == null || letter === '' ? `${tag} missing: the hemisphere is unknown` : `${tag} ${describe(ref)} is not ${positive} or ${negative}`;
  }
  if ((letter === negative && value > 0) || (letter === positive && value < 0)) return `${tag} ${letter} contradicts the sign of ${value}`;
  return null;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.slice(0, 40));
  if (Array.isArray(v)) return `array of ${v.length}`;
  return v === null ? 'null' : typeof v === 'number' ? String(v) : typeof v;
}
