import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { SlidingWindowBudget } from '../shared/sliding-window-budget.js';
import { coerceError } from '../shared/errors.js';
import { GeocoderUnavailableError, RateLimitedError } from './errors.js';
import { findNearbyTown, type GeoNamesClientOptions, type RemoteTown } from './geonames-client.js';
import { validGps } from './gps-validator.js';
import type { GeocodeResult, ReverseGeocoder } from './place-types.js';
import { countryName, DEFAULT_MAX_DISTANCE_KM, distanceKm } from './place-rules.js';

export interface GeoNamesGeocoderOptions {
  /** e.g. http://api.geonames.org; tests point it at a fake. */
  baseUrl: string;
  username: string;
  /** Shared by every process: it is given a client, never builds one, and closes none. */
  redis: Redis;
  /** The same for every process calling with this username: budget, pause and cache live under it. */
  keyPrefix: string;
  /** The shared budget: at most callsPerWindow calls per windowSeconds, all processes together. */
  callsPerWindow: number;
  windowSeconds: number;
  cacheTtlSeconds: number;
  timeoutMs: number;
  maxDistanceKm?: number;
  /** Longest pause after a quota or account error (default: until the service's window resets). */
  maxPauseMs?: number;
}

/** Cached per cell: the nearest town to the cell's centre, or null for "none within the radius". */
interface CellAnswer {
  town: RemoteTown | null;
}

const CELL_DECIMALS = 3;
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const POLL_MS = 50;

/**
 * Reverse geocoding through GeoNames' findNearbyPlaceName, within a call budget shared by every
 * geocode process of every container (they all spend the same username's credits):
 *  - answers are cached in Redis per cell of 0.001° (111 m of latitude, less of longitude away
 *    from the equator): a thousand photos of one spot cost one call. The service is asked about
 *    the cell's centre and the distance is then computed from each photo, so a cached answer is
 *    the same whichever photo of the cell came first.
 *  - one call per cell at a time: within a process, lookups of a cell share one promise; across
 *    processes a short Redis lock makes the others wait for the cached answer.
 *  - each call spends a point of a RateLimiterRedis budget first; an empty budget is a
 *    RateLimitedError carrying when the window reopens.
 *  - a quota or account error from the service stops calls for everyone: a pause key in Redis,
 *    checked before spending budget, until the service's window resets.
 */
export class GeoNamesGeocoder implements ReverseGeocoder {
  private readonly budget: SlidingWindowBudget;
  private readonly client: GeoNamesClientOptions;
  private readonly maxDistanceKm: number;
  private readonly inFlight = new Map<string, Promise<CellAnswer>>();

  constructor(private readonly opts: GeoNamesGeocoderOptions) {
    if (!(opts.callsPerWindow >= 1 && opts.windowSeconds >= 1 && opts.cacheTtlSeconds >= 1 && opts.timeoutMs >= 1)) {
      throw new Error('GeoNamesGeocoder: callsPerWindow, windowSeconds, cacheTtlSeconds and timeoutMs must be positive');
    }
    this.maxDistanceKm = opts.maxDistanceKm ?? DEFAULT_MAX_DISTANCE_KM;
    // A sliding window, not a fixed one: the service's own window starts wherever it starts, and a
    // fixed window of ours could let twice the budget into one of its windows.
    // The service counts calls when they arrive, a little after they were spent here, and not in
    // the order spent: a second of slack (or 2 % of a long window) keeps jitter on the wire from
    // putting one call too many into its window.
    const windowMs = opts.windowSeconds * 1000;
    this.budget = new SlidingWindowBudget(opts.redis, `${opts.keyPrefix}:budget:${opts.username}`, opts.callsPerWindow, windowMs + Math.max(1_000, windowMs * 0.02));
    this.client = {
      baseUrl: opts.baseUrl,
      username: opts.username,
      timeoutMs: opts.timeoutMs,
      // Asked about the cell's centre, which is up to 80 m from the photo: a little more radius
      // so that a town just inside maxDistanceKm of the photo is not missed.
      radiusKm: Math.ceil(this.maxDistanceKm + 1),
      maxRows: 5,
    };
  }

  async lookup(lat: number, lon: number, signal?: AbortSignal): Promise<GeocodeResult> {
    signal?.throwIfAborted();
    const gps = validGps(lat, lon);
    if (!gps.ok) return { place: null, reason: `no GPS: ${gps.note}` };
    const cell = cellOf(gps.lat, gps.lon);
    const answer = (await this.redisCall('read the cache', () => this.opts.redis.get(this.key('cache', cell.key)))) ?? null;
    const cached = answer === null ? null : parseCell(answer);
    const resolved = cached ?? (await abortable(this.shared(cell), signal));
    return this.result(resolved, gps.lat, gps.lon);
  }

  /** One promise per cell in this process: a burst of photos from one spot waits for one answer. */
  private shared(cell: Cell): Promise<CellAnswer> {
    let flight = this.inFlight.get(cell.key);
    if (!flight) {
      flight = this.resolveCell(cell).finally(() => this.inFlight.delete(cell.key));
      this.inFlight.set(cell.key, flight);
    }
    return flight;
  }

  /**
   * Across processes: the one holding the cell's lock calls, the others poll the cache until the
   * answer is there or the lock is gone (the holder failed or was rate limited: then they try,
   * and meet the same pause or budget themselves). The lock outlives a call by its timeout only,
   * so a crashed holder delays the others by that much.
   */
  private async resolveCell(cell: Cell): Promise<CellAnswer> {
    const lockKey = this.key('lock', cell.key);
    const lockMs = this.opts.timeoutMs + 1_000;
    const deadline = Date.now() + 2 * lockMs;
    const token = randomUUID();
    for (;;) {
      const got = await this.redisCall('take the cell lock', () => this.opts.redis.set(lockKey, token, 'PX', lockMs, 'NX'));
      if (got === 'OK') {
        try {
          // Another process may have answered between our cache read and taking the lock.
          const cached = await this.redisCall('read the cache', () => this.opts.redis.get(this.key('cache', cell.key)));
          const parsed = cached === null ? null : parseCell(cached);
          return parsed ?? (await this.callService(cell));
        } finally {
          await this.opts.redis.eval(RELEASE, 1, lockKey, token).catch(() => {});
        }
      }
      while (Date.now() < deadline) {
        await sleep(POLL_MS);
        const [cached, locked] = await this.redisCall('wait for the cell', () =>
          Promise.all([this.opts.redis.get(this.key('cache', cell.key)), this.opts.redis.exists(lockKey)]),
        );
        const parsed = cached === null ? null : parseCell(cached);
        if (parsed) return parsed;
        if (locked === 0) break;
      }
      if (Date.now() >= deadline) throw new GeocoderUnavailableError(`another process has been looking up ${cell.key} for ${2 * lockMs} ms`);
    }
  }

  private async callService(cell: Cell): Promise<CellAnswer> {
    const pauseKey = this.key('pause');
    const [pauseMs, pauseReason] = await this.redisCall('read the pause', () => Promise.all([this.opts.redis.pttl(pauseKey), this.opts.redis.get(pauseKey)]));
    if (pauseMs > 0) throw new RateLimitedError(pauseMs, `GeoNames calls paused: ${pauseReason ?? 'quota'}`);
    let waitMs: number;
    try {
      waitMs = await this.budget.spend();
    } catch (err) {
      throw new GeocoderUnavailableError(`cannot spend from the GeoNames budget: ${coerceError(err).message}`, { cause: err });
    }
    if (waitMs > 0) throw new RateLimitedError(waitMs, `GeoNames budget of ${this.opts.callsPerWindow} calls per ${this.opts.windowSeconds} s spent`);
    const answer = await findNearbyTown(this.client, cell.lat, cell.lon);
    if ('quota' in answer) {
      const { code, message } = answer.quota;
      // The service's window decides the pause; an operator may cap it so that calls are probed sooner.
      const ms = Math.min(answer.quota.pauseMs, this.opts.maxPauseMs ?? Number.POSITIVE_INFINITY);
      const reason = `GeoNames ${code === 10 ? 'account' : 'quota'} error ${code}: ${message}`.slice(0, 300);
      await this.redisCall('set the pause', () => this.opts.redis.set(pauseKey, reason, 'PX', ms));
      throw new RateLimitedError(ms, reason);
    }
    const value: CellAnswer = { town: answer.town };
    // A failed cache write costs a future call, not this answer.
    await this.opts.redis.set(this.key('cache', cell.key), JSON.stringify(value), 'EX', this.opts.cacheTtlSeconds).catch(() => {});
    return value;
  }

  private result(answer: CellAnswer, lat: number, lon: number): GeocodeResult {
    const town = answer.town;
    if (!town) return { place: null, reason: `no town within ${this.maxDistanceKm} km (GeoNames)` };
    const km = distanceKm(lat, lon, town.lat, town.lon);
    if (km > this.maxDistanceKm) return { place: null, reason: `no town within ${this.maxDistanceKm} km (GeoNames: ${town.name} at ${km.toFixed(1)} km)` };
    return {
      place: {
        ...town,
        countryName: countryName(town.countryCode),
        distanceKm: Math.round(km * 100) / 100,
        source: 'geonames',
      },
    };
  }

  private key(...parts: string[]): string {
    return [this.opts.keyPrefix, ...parts].join(':');
  }

  /** Redis down is the geocoder being unavailable (retry later), not a bug of the photo. */
  private async redisCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new GeocoderUnavailableError(`cannot ${what} in Redis: ${coerceError(err).message}`, { cause: err });
    }
  }
}

interface Cell {
  key: string;
  lat: number;
  lon: number;
}

/** The 0.001° cell of a position; longitude wrapped so 180 and -180 are one cell, -0.000 is 0.000. */
export function cellOf(lat: number, lon: number): Cell {
  const round = (v: number) => Math.round(v * 10 ** CELL_DECIMALS) / 10 ** CELL_DECIMALS + 0;
  const la = round(lat);
  const lo = round(((((lon + 180) % 360) + 360) % 360) - 180);
  return { key: `${la.toFixed(CELL_DECIMALS)}:${lo.toFixed(CELL_DECIMALS)}`, lat: la, lon: lo };
}

/** A cache entry that does not parse (an older format, a hand edit) is a miss, not an error. */
function parseCell(json: string): CellAnswer | null {
  try {
    const v = JSON.parse(json) as { town?: unknown };
    if (v.town === null) return { town: null };
    const t = v.town as Partial<RemoteTown> | undefined;
    if (t && typeof t.geonameId === 'number' && typeof t.name === 'string' && typeof t.countryCode === 'string' && typeof t.lat === 'number' && typeof t.lon === 'number') {
      return { town: { geonameId: t.geonameId, name: t.name, admin1: typeof t.admin1 === 'string' ? t.admin1 : null, countryCode: t.countryCode, lat: t.lat, lon: t.lon } };
    }
  } catch {
    // fall through: a miss
  }
  return null;
}

/** Waits for a shared flight, but lets this caller leave when its own signal aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
