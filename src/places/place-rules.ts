import { distance } from 'geokdbush';

/**
 * The rules both providers apply, so a photo gets the same kind of answer from the bundled data
 * and from the web service.
 */

/** Beyond this a photo is "not in a town": the same default as Immich (25 km). */
export const DEFAULT_MAX_DISTANCE_KM = 25;

/**
 * GeoNames feature codes that are not a town a photo was taken in:
 *  - PPLX "section of populated place": neighbourhoods and districts (Lauttasaari for a photo in
 *    Helsinki, Brooklyn Heights for one in New York). Immich dropped them for that reason
 *    (immich-app/immich#8941, PR #9051).
 *  - PPLH historical, PPLQ abandoned, PPLW destroyed, PPLCH former capital: places that no
 *    longer exist as such.
 */
const NOT_A_TOWN = new Set(['PPLX', 'PPLH', 'PPLQ', 'PPLW', 'PPLCH']);

/**
 * Australia is the exception for PPLX: its suburbs, the locality of every Australian address,
 * are coded PPLX, and without them photos in Sydney or Melbourne resolve to a suburb kilometres
 * away (Immich PR #11370 restored them for AU after dropping PPLX everywhere).
 */
export function isTown(featureCode: string, countryCode: string): boolean {
  if (featureCode === 'PPLX') return countryCode === 'AU';
  return !NOT_A_TOWN.has(featureCode);
}

/** Great-circle distance (haversine, R = 6371 km), correct across the antimeridian. */
export function distanceKm(lat1: number, lon1: number, lat2: number, lon2: number): number {
  return distance(lon1, lat1, lon2, lat2);
}

const regionNames = new Intl.DisplayNames(['en'], { type: 'region', fallback: 'code' });

/** "IT" -> "Italy". A code Intl does not know comes back as itself rather than failing a photo. */
export function countryName(code: string): string {
  try {
    return regionNames.of(code.toUpperCase()) ?? code;
  } catch {
    // Intl throws RangeError on a malformed code; the data never has one, a web answer might.
    return code;
  }
}

/** GeoNames' placeholders for "no first-level division": empty and "00". */
export function admin1Code(code: string | undefined | null): string | null {
  return code && code !== '00' ? code : null;
}
