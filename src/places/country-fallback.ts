import { iso1A2Code } from '@rapideditor/country-coder';
import type { PlaceIndex } from './place-index.js';
import { countryName } from './place-rules.js';

export interface CountryFallbackOptions {
  /** Radius of the ring of extra border checks around the photo; default 10 km. */
  ringKm: number;
  /** A town of the same country must lie within this distance; default 100 km. */
  confirmKm: number;
}

export type CountryAnswer = { countryCode: string; countryName: string } | { reason: string };

const BEARINGS = [0, 45, 90, 135, 180, 225, 270, 315];
const EARTH_RADIUS_KM = 6371;
const RAD = Math.PI / 180;

/**
 * The country of a photo that is too far from any town to name one, given only when two
 * independent sources agree, because a wrong country is worse than none:
 *  1. country-coder's borders (territory level, so Svalbard is SJ and Greenland GL, as in
 *     GeoNames) name the same country at the photo and at eight points ringKm around it. The
 *     borders are generalised (the package says so), and over water they are extended far
 *     beyond territorial waters (a point in the mid-Atlantic codes as BR): the ring keeps
 *     answers away from a border whose exact line the data does not know.
 *  2. The nearest town within confirmKm is in that country. This rules out the generalised sea
 *     areas (open ocean has no town within 100 km) and any border the polygons get wrong.
 * So a hiker deep in the Sahara or the taiga, with no town within confirmKm, gets no country: an
 * honest null rather than a guess.
 */
export function countryWithoutTown(index: PlaceIndex, lat: number, lon: number, opts: CountryFallbackOptions): CountryAnswer {
  const code = territoryAt(lat, lon);
  if (!code) return { reason: 'inside no country border (open sea or unclaimed land)' };
  for (const bearing of BEARINGS) {
    const [ringLat, ringLon] = destination(lat, lon, bearing, opts.ringKm);
    const other = territoryAt(ringLat, ringLon);
    if (other !== code) return { reason: `within ${opts.ringKm} km of the border of ${countryName(code)} (${other ? countryName(other) : 'sea'} beyond it): country uncertain` };
  }
  const [nearest] = index.nearest(lat, lon, opts.confirmKm, 1);
  if (!nearest) return { reason: `no town within ${opts.confirmKm} km to confirm ${countryName(code)}` };
  const townCountry = index.table.countryCodes[nearest.row] ?? '';
  if (townCountry !== code) return { reason: `borders say ${countryName(code)} but the nearest town is in ${countryName(townCountry)}: country uncertain` };
  return { countryCode: code, countryName: countryName(code) };
}

function territoryAt(lat: number, lon: number): string | null {
  return iso1A2Code([lon, lat], { level: 'territory' });
}

/** The point distanceKm away along a great circle from lat/lon, longitude wrapped to -180..180. */
function destination(lat: number, lon: number, bearingDeg: number, distanceKm: number): [number, number] {
  const d = distanceKm / EARTH_RADIUS_KM;
  const b = bearingDeg * RAD;
  const la1 = lat * RAD;
  const la2 = Math.asin(Math.sin(la1) * Math.cos(d) + Math.cos(la1) * Math.sin(d) * Math.cos(b));
  const lo2 = lon * RAD + Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(la1), Math.cos(d) - Math.sin(la1) * Math.sin(la2));
  const wrapped = ((((lo2 / RAD + 180) % 360) + 360) % 360) - 180;
  return [la2 / RAD, wrapped];
}
