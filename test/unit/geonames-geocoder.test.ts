import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { GeocoderRejectedError, GeocoderUnavailableError, RateLimitedError } from '../../src/places/errors.js';
import { cellOf, GeoNamesGeocoder, type GeoNamesGeocoderOptions } from '../../src/places/geonames-geocoder.js';
import { quotaPauseMs } from '../../src/places/geonames-client.js';
import type { GeocodeResult } from '../../src/places/place-types.js';
import { FakeGeoNames } from '../helpers/fake-geonames.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

async function connect(): Promise<Redis> {
  // As in production (src/shared/redis.ts): fail fast instead of queueing while Redis is away.
  const redis = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  await redis.connect();
  return redis;
}

/** Ten spots in Tuscany, more than 111 m apart so each is its own cache cell. */
const SPOTS = Array.from({ length: 10 }, (_, i) => [43.4 + i * 0.01, 11.8 + i * 0.01] as const);

/**
 * Two geocoders with two Redis clients stand for two processes (or containers) sharing one
 * GeoNames username; the fake service is a real HTTP server on 127.0.0.1 that counts calls and
 * enforces its own limit of 20 calls a minute. Every test has its own key prefix and deletes it.
 */
describe('GeoNames geocoder', () => {
  let redisA: Redis;
  let redisB: Redis;
  let fake: FakeGeoNames;
  let prefix: string;

  before(async () => {
    [redisA, redisB] = await Promise.all([connect(), connect()]);
  });
  after(async () => {
    await Promise.all([redisA.quit(), redisB.quit()]);
  });
  beforeEach(async () => {
    prefix = `test:geonames:${randomBytes(6).toString('hex')}`;
    fake = await new FakeGeoNames({ calls: 20, windowMs: 60_000 }).start();
  });
  afterEach(async () => {
    await fake.close();
    const keys = await redisA.keys(`${prefix}:*`);
    if (keys.length > 0) await redisA.del(...keys);
  });

  function geocoder(redis: Redis, over: Partial<GeoNamesGeocoderOptions> = {}): GeoNamesGeocoder {
    return new GeoNamesGeocoder({
      baseUrl: fake.url,
      username: 'photopipe-test',
      redis,
      keyPrefix: prefix,
      callsPerWindow: 20,
      windowSeconds: 60,
      cacheTtlSeconds: 60,
      timeoutMs: 1_000,
      ...over,
    });
  }

  it('two processes, 100 lookups of 10 spots: one call per spot, never over the limit', async () => {
    const [a, b] = [geocoder(redisA), geocoder(redisB)];
    const lookups = Array.from({ length: 100 }, (_, i) => {
      const [lat, lon] = SPOTS[i % SPOTS.length] ?? [0, 0];
      // Slightly different positions within each spot's cell, as photos of one place are.
      return (i % 2 === 0 ? a : b).lookup(lat + ((i % 7) - 3) * 0.0001, lon);
    });
    const results = await Promise.all(lookups);
    assert.ok(results.every((r) => r.place !== null && r.place.source === 'geonames'));
    assert.equal(fake.calls, 10);
    assert.equal(fake.limitExceeded, false);
    assert.equal(fake.queries[0]?.username, 'photopipe-test');
    assert.equal(fake.queries[0]?.radius, '26');
    // The same spot again: answered from the cache, by either process.
    await Promise.all(SPOTS.map(([lat, lon]) => b.lookup(lat, lon)));
    assert.equal(fake.calls, 10);
  });

  it('a spent budget is a RateLimitedError with the time until the window reopens, for both processes', async () => {
    const [a, b] = [geocoder(redisA), geocoder(redisB)];
    // 30 distinct spots, each looked up by both processes, against a budget of 20 calls a minute.
    const spots = Array.from({ length: 30 }, (_, i) => [44 + i * 0.01, 10] as const);
    const settled = await Promise.allSettled(spots.flatMap(([lat, lon]) => [a.lookup(lat, lon), b.lookup(lat, lon)]));
    const limited = settled.filter((s) => s.status === 'rejected').map((s) => (s as PromiseRejectedResult).reason as unknown);
    const placed = settled.filter((s) => s.status === 'fulfilled' && s.value.place !== null);
    assert.equal(fake.calls, 20, 'the budget, and not one call more');
    assert.equal(fake.limitExceeded, false);
    assert.equal(placed.length, 40, '20 spots answered, to both processes');
    assert.equal(limited.length, 20);
    for (const err of limited) {
      assert.ok(err instanceof RateLimitedError, String(err));
      assert.ok(err.retryInMs > 0 && err.retryInMs <= 61_200, `retryInMs (the 60 s window plus its 2 % slack) ${err.retryInMs}`);
    }
  });

  it('a quota answer (19) pauses every process until the hour is over', async () => {
    const [a, b] = [geocoder(redisA), geocoder(redisB)];
    fake.mode = 'quota19';
    const first = await a.lookup(43.5, 11.9).catch((e: unknown) => e);
    assert.ok(first instanceof RateLimitedError, String(first));
    assert.ok(first.retryInMs > 60_000 && first.retryInMs <= 3_660_000, `retryInMs ${first.retryInMs}`);
    assert.match(first.message, /quota error 19/);
    fake.mode = 'towns';
    // Neither process calls while paused, whatever spot it asks about.
    for (const g of [a, b]) {
      const err = await g.lookup(45.1, 9.2).catch((e: unknown) => e);
      assert.ok(err instanceof RateLimitedError, String(err));
      assert.ok(err.retryInMs > 0 && err.retryInMs <= first.retryInMs);
    }
    assert.equal(fake.calls, 1);
    // The pause ends when its key does (here: deleted, as expiry would).
    await redisA.del(`${prefix}:pause`);
    assert.ok((await b.lookup(45.1, 9.2)).place);
    assert.equal(fake.calls, 2);
  });

  it('an account error (10) pauses too; 503, timeouts, refused connections and garbage are retryable; 400 is permanent', async () => {
    const g = geocoder(redisA, { timeoutMs: 300 });
    fake.mode = 'auth10';
    const auth = await g.lookup(43.1, 11.1).catch((e: unknown) => e);
    assert.ok(auth instanceof RateLimitedError && auth.retryInMs === 3_600_000, String(auth));
    await redisA.del(`${prefix}:pause`);
    for (const [mode, pattern] of [
      ['http500', /HTTP 503/],
      ['garbage', /unreadable answer/],
      ['slow', /no answer within 300 ms/],
    ] as const) {
      fake.mode = mode;
      const err = await g.lookup(43.2, 11.2).catch((e: unknown) => e);
      assert.ok(err instanceof GeocoderUnavailableError, `${mode}: ${String(err)}`);
      assert.equal(err.errorClass, 'retryable');
      assert.match(err.message, pattern);
    }
    fake.mode = 'http400';
    const rejected = await g.lookup(43.2, 11.2).catch((e: unknown) => e);
    assert.ok(rejected instanceof GeocoderRejectedError && rejected.errorClass === 'permanent', String(rejected));
    const closed = await new FakeGeoNames({ calls: 1, windowMs: 1 }).start();
    await closed.close();
    const down = geocoder(redisA, { baseUrl: closed.url });
    const refused = await down.lookup(43.3, 11.3).catch((e: unknown) => e);
    assert.ok(refused instanceof GeocoderUnavailableError, String(refused));
    assert.match(refused.message, /ECONNREFUSED/);
    // None of these answers was cached: the spot is asked again once the service is back.
    fake.mode = 'towns';
    assert.ok((await g.lookup(43.2, 11.2)).place);
  });

  it('caches places and "no town" per 0.001° cell, and measures the distance from each photo', async () => {
    const g = geocoder(redisA);
    const first = await g.lookup(43.40001, 11.80001);
    const second = await g.lookup(43.40032, 11.79979); // same cell, 35 m away
    assert.equal(fake.calls, 1);
    assert.ok(first.place && second.place);
    assert.equal(first.place.geonameId, second.place.geonameId);
    assert.notEqual(first.place.distanceKm, second.place.distanceKm);
    assert.equal(first.place.countryName, 'Italy');
    assert.equal(first.place.admin1, 'Tuscany');
    assert.ok(Math.abs(first.place.distanceKm - 1.11) < 0.01, `${first.place.distanceKm}`);
    fake.mode = 'empty';
    const none = await g.lookup(47, -30);
    assert.equal(none.place, null);
    fake.mode = 'towns';
    assert.equal((await g.lookup(47, -30)).place, null, 'the empty answer was cached');
    assert.equal(fake.calls, 2);
    assert.ok((await redisA.ttl(`${prefix}:cache:${cellOf(47, -30).key}`)) > 0, 'with a TTL');
  });

  it('applies the offline rules to the answer: no PPLX, the nearest town, nothing beyond 25 km', async () => {
    const g = geocoder(redisA);
    const row = (id: number, lat: number, lng: number, fcode: string) => ({ geonameId: id, name: `P${id}`, lat: String(lat), lng: String(lng), countryCode: 'FI', adminCode1: '01', adminName1: 'Uusimaa', fcode });
    fake.rows = (lat, lng) => [row(1, lat + 0.005, lng, 'PPLX'), row(2, lat + 0.05, lng, 'PPL'), row(3, lat + 0.02, lng, 'PPLC')];
    const r: GeocodeResult = await g.lookup(60.15, 24.9);
    assert.equal(r.place?.geonameId, 3, 'the nearest town that is not a section of one');
    fake.rows = (lat, lng) => [row(4, lat + 0.3, lng, 'PPL')];
    const far = await g.lookup(61, 25);
    assert.ok(far.place === null && /no town within 25 km/.test(far.reason), JSON.stringify(far));
    assert.equal((await g.lookup(0, 0)).place, null);
    assert.equal(fake.calls, 2, '0,0 is no GPS and costs no call');
  });

  it('lets a caller leave on its signal while the shared call goes on for the others', async () => {
    const g = geocoder(redisA);
    fake.rows = (lat, lng) => [{ geonameId: 7, name: 'Slowtown', lat: String(lat), lng: String(lng), countryCode: 'IT', fcode: 'PPL' }];
    const controller = new AbortController();
    const leaving = g.lookup(43.7, 11.2, controller.signal);
    const staying = g.lookup(43.7, 11.2);
    controller.abort(new Error('stage timed out'));
    await assert.rejects(leaving, /stage timed out/);
    assert.equal((await staying).place?.name, 'Slowtown');
    assert.equal(fake.calls, 1);
  });

  it('pauses until the service window ends: next UTC hour, day, Monday', () => {
    const now = new Date('2026-03-04T10:15:00Z'); // a Wednesday
    assert.equal(quotaPauseMs(19, now), 45 * 60_000 + 60_000);
    assert.equal(quotaPauseMs(18, now), (13 * 60 + 45) * 60_000 + 60_000);
    assert.equal(quotaPauseMs(20, now), ((4 * 24 + 13) * 60 + 45) * 60_000 + 60_000);
    assert.equal(quotaPauseMs(20, new Date('2026-03-02T00:00:00Z')), 7 * 24 * 3_600_000 + 60_000, 'on a Monday: the next one');
  });

  it('puts 180° and -180°, 0.0001 and -0.0001 in one cell', () => {
    assert.equal(cellOf(10, 180).key, cellOf(10, -180).key);
    assert.equal(cellOf(-0.0001, -0.0001).key, '0.000:0.000');
    assert.equal(cellOf(43.46744, 11.88513).key, '43.467:11.885');
  });
});
