import type { Config } from '../../shared/config.js';
import { DeferError } from '../../shared/errors.js';
import { bigint, jsonb } from '../../db/photos/stage-columns.js';
import { PlaceRepo } from '../../db/places/place-repo.js';
import { RateLimitedError } from '../../places/errors.js';
import { createOfflineGeocoder } from '../../places/offline-geocoder.js';
import { GeoNamesGeocoder } from '../../places/geonames-geocoder.js';
import type { GeocodeResult, ReverseGeocoder } from '../../places/place-types.js';
import { defineStage, type StageDeps } from '../stage-module.js';

type Provider = Config['GEOCODER'];

/**
 * The providers a geocode process can use: the configured one is built at start-up (the offline
 * index loads once, about a second), the other on first use (re-geocoding with --provider).
 */
function providers(deps: StageDeps): (p: Provider) => Promise<ReverseGeocoder> {
  const { config } = deps;
  const made = new Map<Provider, Promise<ReverseGeocoder>>();
  const make = (p: Provider): Promise<ReverseGeocoder> => {
    if (p === 'offline') return createOfflineGeocoder({ maxDistanceKm: config.PLACE_MAX_DISTANCE_KM });
    if (!config.GEONAMES_USERNAME) return Promise.reject(new Error('GEONAMES_USERNAME is not set: the GeoNames provider is not configured'));
    return Promise.resolve(
      new GeoNamesGeocoder({
        baseUrl: config.GEONAMES_BASE_URL,
        username: config.GEONAMES_USERNAME,
        redis: deps.redis,
        keyPrefix: `${config.REDIS_KEY_PREFIX}geonames`,
        callsPerWindow: config.GEONAMES_CALLS_PER_WINDOW,
        windowSeconds: config.GEONAMES_WINDOW_SECONDS,
        cacheTtlSeconds: config.GEONAMES_CACHE_TTL_SECONDS,
        timeoutMs: config.GEONAMES_TIMEOUT_MS,
        maxDistanceKm: config.PLACE_MAX_DISTANCE_KM,
        maxPauseMs: config.GEONAMES_MAX_PAUSE_SECONDS === undefined ? undefined : config.GEONAMES_MAX_PAUSE_SECONDS * 1000,
      }),
    );
  };
  return (p) => {
    let got = made.get(p);
    if (!got) {
      got = make(p);
      made.set(p, got);
      got.catch(() => made.delete(p));
    }
    return got;
  };
}

/** What the photo row keeps of a geocode: the match (with its distance), or why there is none. */
function placeColumn(result: GeocodeResult, provider: Provider): unknown {
  if (result.place) return result.place;
  return { geonameId: null, reason: result.reason, countryCode: result.countryCode ?? null, countryName: result.countryName ?? null, source: provider };
}

/**
 * geocode: the photo's nearest town (within PLACE_MAX_DISTANCE_KM) as a Place. The place row is
 * upserted by its GeoNames id, so concurrent photos of one place never make two. A provider whose
 * shared call budget is spent defers the message until its window opens (no attempt spent, no
 * consumer held); a provider that stays down fails the stage, not the photo (best effort).
 */
export default defineStage({
  async create(deps) {
    const get = providers(deps);
    await get(deps.config.GEOCODER); // load the default provider before consuming
    const places = new PlaceRepo(deps.db);
    return {
      async run({ msg, photo, ctx }) {
        const provider = msg.geocoder ?? deps.config.GEOCODER;
        const gps = photo.gps;
        if (!gps) return { columns: { place: jsonb(null), place_id: bigint(null) } };
        let result: GeocodeResult;
        try {
          result = await (await get(provider)).lookup(gps.lat, gps.lon, ctx.signal);
        } catch (err) {
          if (err instanceof RateLimitedError) throw new DeferError(Math.max(err.retryInMs, 100), err.message);
          throw err;
        }
        if (result.place) await places.upsert(result.place);
        ctx.log.debug({ placeId: result.place?.geonameId ?? null, provider }, result.place ? 'place found' : 'no place');
        return { columns: { place: jsonb(placeColumn(result, provider)), place_id: bigint(result.place?.geonameId ?? null) } };
      },
    };
  },
});
