import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { craftedJpeg, gpsEntries } from './helpers/exif-builder.js';
import { distinctJpeg } from './helpers/fixtures.js';
import { FakeGeoNames } from './helpers/fake-geonames.js';
import { newTenant } from './helpers/fault-check.js';
import { logLines } from './helpers/logs.js';
import { Stack, waitFor, type Proc } from './helpers/stack.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'photopipe.js');

interface PlaceView {
  geonameId: number | null;
  name: string | null;
  countryCode: string | null;
  source: string | null;
  distanceKm: number | null;
}
interface View {
  status: string;
  place: PlaceView | null;
  placeReason: string | null;
  stages: Record<string, string>;
  warnings: { stage: string; code: string | null; reason: string }[];
}
interface LogLine {
  msg?: string;
  stage?: string;
  attempt?: number;
  lane?: string;
}

/** Three real places (Arezzo, Madrid, Helsinki) and the towns the bundled data puts there. */
const SPOTS = [
  { lat: 43.467448, lon: 11.885127, geonameId: 3182884, name: 'Arezzo' },
  { lat: 40.446972, lon: -3.724753, geonameId: 3117735, name: 'Madrid' },
  { lat: 60.146706, lon: 24.906772, geonameId: 658225, name: 'Helsinki' },
];

/**
 * Places end to end: the offline geocoder gives each photo its town, one Place row per town under
 * any concurrency (2 geocode processes); the GeoNames provider stays within a call budget shared
 * by every process (deferring, never failing, never spending attempts), caches per spot, survives
 * an outage and a quota error; geocoding is best effort; re-geocoding goes through the bulk lane.
 */
describe('places', () => {
  let stack: Stack;
  let fake: FakeGeoNames;
  let others: Proc;
  let geocoders: Proc[] = [];
  const geonames = (): Record<string, string> => ({
    GEOCODER: 'geonames',
    GEONAMES_BASE_URL: fake.url,
    GEONAMES_USERNAME: 'photopipe-test',
    GEONAMES_CALLS_PER_WINDOW: '4',
    GEONAMES_WINDOW_SECONDS: '10',
    GEONAMES_MAX_PAUSE_SECONDS: '3',
  });

  const gpsJpeg = async (lat: number, lon: number, salt: string) => distinctJpeg(await craftedJpeg({ gps: gpsEntries(lat, lon) }), salt);
  const view = async (id: string, key = stack.apiKey) => {
    const res = await stack.getPhoto(id, key);
    assert.equal(res.status, 200);
    return res.body as unknown as View;
  };
  const api = async (path: string, key = stack.apiKey) => {
    const res = await fetch(`${stack.apiUrl}${path}`, { headers: { authorization: `Bearer ${key}` } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  async function startGeocoders(n: number, env: Record<string, string> = {}): Promise<void> {
    for (const g of geocoders) await g.stop();
    geocoders = [];
    for (let i = 0; i < n; i++) geocoders.push(stack.spawnCli(`geocode-${Date.now()}-${i}`, ['worker', '--role', 'geocode'], env));
    await stack.waitForConsumers(['geocode'], n, 60_000);
  }
  async function uploadAll(bodies: Buffer[], concurrency = 16): Promise<string[]> {
    const ids: string[] = new Array(bodies.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let i = next++; i < bodies.length; i = next++) ids[i] = await stack.uploadOk(bodies[i]!);
      }),
    );
    return ids;
  }

  before(async () => {
    stack = await Stack.start({ workers: 'none', env: { STAGE_PREFETCH: 'geocode=8' } });
    fake = await new FakeGeoNames({ calls: 5, windowMs: 10_000 }).start();
    others = await stack.startWorkers(['ingest', 'exif', 'frame', 'thumbnail', 'upload']);
  });

  after(async () => {
    await fake?.close();
    await stack?.stop();
  });

  it('gives 200 concurrent photos of 3 places exactly 3 Place rows, every photo linked, with 2 geocode processes', async () => {
    await startGeocoders(2);
    const bodies = await Promise.all(Array.from({ length: 200 }, (_, i) => gpsJpeg(SPOTS[i % 3]!.lat, SPOTS[i % 3]!.lon, `place-${i}`)));
    const ids = await uploadAll(bodies);
    const final = await stack.waitAllFinal(ids, 240_000);
    assert.deepEqual([...new Set(final.values())], ['complete']);
    const { rows } = await stack.db.query<{ geoname_id: string; name: string }>(`SELECT geoname_id, name FROM places ORDER BY geoname_id`);
    assert.deepEqual(rows.map((r) => [Number(r.geoname_id), r.name]).sort(), SPOTS.map((s) => [s.geonameId, s.name]).sort());
    const linked = await stack.db.query<{ place_id: string; n: number }>(`SELECT place_id, count(*)::int AS n FROM photos WHERE id = ANY($1::uuid[]) GROUP BY place_id`, [ids]);
    assert.deepEqual(linked.rows.map((r) => [Number(r.place_id), r.n]).sort(), SPOTS.map((s, i) => [s.geonameId, [67, 67, 66][i]]).sort());
    const v = await view(ids[1]!);
    assert.equal(v.place?.name, 'Madrid');
    assert.equal(v.place?.countryCode, 'ES');
    assert.equal(v.place?.source, 'offline');
    assert.ok((v.place?.distanceKm ?? 99) < 5);
    assert.equal(v.placeReason, null);
  });

  it('lists a tenant\'s places with counts and newest photo, and never another tenant\'s', async () => {
    const list = await api('/v1/places?limit=2');
    assert.equal(list.status, 200);
    const items = list.body.items as { id: number; name: string; photoCount: number; newestPhoto: { id: string } }[];
    assert.equal(items.length, 2);
    const rest = await api(`/v1/places?limit=2&cursor=${String(list.body.nextCursor)}`);
    const all = [...items, ...(rest.body.items as typeof items)];
    assert.deepEqual(all.map((p) => p.name).sort(), ['Arezzo', 'Helsinki', 'Madrid']);
    assert.equal(all.reduce((n, p) => n + p.photoCount, 0), 200);
    const madrid = all.find((p) => p.name === 'Madrid')!;
    const photos = await api(`/v1/places/${madrid.id}/photos?limit=50`);
    assert.equal(photos.status, 200);
    assert.equal((photos.body.items as unknown[]).length, 50);
    assert.ok(photos.body.nextCursor);

    const stranger = await newTenant(stack, 'stranger');
    assert.deepEqual((await api('/v1/places', stranger.key)).body.items, []);
    assert.equal((await api(`/v1/places/${madrid.id}/photos`, stranger.key)).status, 404);
    assert.equal((await api('/v1/places/abc/photos')).status, 404);
  });

  it('with GeoNames: 100 photos at 10 spots from 2 processes stay within the shared budget, cost at most 10 calls, and spend no attempt on waiting', async () => {
    await startGeocoders(2, geonames());
    const spots = Array.from({ length: 10 }, (_, i) => ({ lat: 44 + i * 0.5, lon: 10 + i * 0.25 }));
    const bodies = await Promise.all(Array.from({ length: 100 }, (_, i) => gpsJpeg(spots[i % 10]!.lat, spots[i % 10]!.lon, `gn-${i}`)));
    const started = Date.now();
    const ids = await uploadAll(bodies);
    const final = await stack.waitAllFinal(ids, 180_000);
    assert.deepEqual([...new Set(final.values())], ['complete']);
    assert.equal(fake.limitExceeded, false, `the service saw its limit exceeded: ${JSON.stringify(fake.queries.map((q) => [q.at - fake.queries[0]!.at, q.lat, q.lng]))}`);
    assert.ok(fake.calls <= 10, `${fake.calls} calls for 10 spots`);
    const sources = new Set<string>();
    for (const id of ids.slice(0, 10)) sources.add((await view(id)).place?.source ?? 'none');
    assert.deepEqual([...sources], ['geonames']);
    const lines = geocoders.flatMap((g) => logLines<LogLine>(stack, g.name));
    const deferred = lines.filter((l) => l.msg === 'stage deferred');
    const done = lines.filter((l) => l.msg === 'stage done' && l.stage === 'geocode');
    console.log(`# geonames: 100 photos, 10 spots, ${fake.calls} calls, ${deferred.length} deferrals, ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.ok(deferred.length > 0, 'the budget (4 calls per 10 s) made some wait');
    assert.ok(done.every((l) => l.attempt === 1), 'every geocode succeeded on its first attempt: waiting spent none');
    assert.equal((await stack.queueStats(stack.dlq('geocode'))).messageCount, 0);
  });

  it('completes photos once the service recovers from errors, and a quota error pauses without failing them', async () => {
    fake.mode = 'http500';
    const outage = await uploadAll(await Promise.all([0, 1, 2].map((i) => gpsJpeg(50 + i, 5, `outage-${i}`))));
    await new Promise((r) => setTimeout(r, 1_500));
    fake.mode = 'towns';
    assert.deepEqual([...new Set((await stack.waitAllFinal(outage, 90_000)).values())], ['complete']);
    for (const id of outage) assert.equal((await view(id)).place?.source, 'geonames');

    fake.mode = 'quota19';
    const quota = await uploadAll(await Promise.all([0, 1, 2].map((i) => gpsJpeg(55 + i, 6, `quota-${i}`))));
    await waitFor('a quota pause', async () => geocoders.flatMap((g) => logLines<LogLine & { reason?: string }>(stack, g.name)).some((l) => l.msg === 'stage deferred' && /quota error 19/.test(l.reason ?? '')), 30_000);
    fake.mode = 'towns';
    assert.deepEqual([...new Set((await stack.waitAllFinal(quota, 90_000)).values())], ['complete']);
    for (const id of quota) {
      const v = await view(id);
      assert.equal(v.place?.source, 'geonames');
      assert.deepEqual(v.warnings, []);
    }
    assert.equal((await stack.queueStats(stack.dlq('geocode'))).messageCount, 0, 'nothing dead-lettered for waiting');
  });

  it('is best effort: a service down past the retries leaves the photo complete without a place, and a replay finds it later', async () => {
    await startGeocoders(1, { ...geonames(), STAGE_MAX_ATTEMPTS: 'geocode=2' });
    fake.mode = 'http500';
    const [id] = await uploadAll([await gpsJpeg(61, 7, 'down')]);
    assert.equal(await stack.waitFinal(id!, 60_000), 'complete');
    const v = await view(id!);
    assert.equal(v.status, 'complete');
    assert.equal(v.place, null);
    assert.match(v.placeReason ?? '', /^geocoding failed: /);
    assert.equal(v.stages.geocode, 'failed');
    assert.deepEqual(v.warnings.map((w) => [w.stage, w.code]), [['geocode', 'geocoder_unavailable']]);
    await waitFor('its dead letter', async () => (await stack.queueStats(stack.dlq('geocode'))).messageCount === 1, 20_000);

    fake.mode = 'towns';
    const replay = await new Promise<{ code: number | null; stdout: string }>((resolve) =>
      execFile(process.execPath, [BIN, 'dlq', 'replay', '--stage', 'geocode'], { env: { ...process.env, ...stack.env } }, (err, stdout) => resolve({ code: err ? 1 : 0, stdout })),
    );
    assert.equal(replay.code, 0);
    const fixed = await waitFor('the replayed geocode to find the place', async () => {
      const w = await view(id!);
      return w.place ? w : null;
    }, 30_000, 200);
    assert.equal(fixed.stages.geocode, 'done');
    assert.deepEqual(fixed.warnings, []);
    assert.equal(fixed.placeReason, null);
  });

  it('re-geocodes complete photos through the bulk lane with another provider', async () => {
    await startGeocoders(1, geonames());
    const { rows: before } = await stack.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM photos WHERE tenant_id = $1 AND status = 'complete' AND gps_lat IS NOT NULL`, [stack.tenant]);
    const res = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [BIN, 'places', 'regeocode', '--tenant', stack.tenant, '--provider', 'offline'], { env: { ...process.env, ...stack.env }, timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout, stderr }),
      ),
    );
    assert.equal(res.code, 0, res.stderr);
    const report = JSON.parse(res.stdout) as { queued: number; provider: string };
    assert.equal(report.provider, 'offline');
    assert.equal(report.queued, before[0]?.n, 'every complete photo with GPS');
    assert.ok(report.queued >= 300);
    await waitFor('every photo geocoded again', async () => {
      const { rows } = await stack.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM photos WHERE tenant_id = $1 AND stages ->> 'geocode' = 'pending'`, [stack.tenant]);
      return rows[0]?.n === 0;
    }, 180_000, 500);
    const { rows } = await stack.db.query<{ source: string; n: number }>(`SELECT place ->> 'source' AS source, count(*)::int AS n FROM photos WHERE tenant_id = $1 AND gps_lat IS NOT NULL GROUP BY 1`, [stack.tenant]);
    assert.deepEqual(rows.map((r) => r.source), ['offline'], JSON.stringify(rows));
    const bulk = geocoders.flatMap((g) => logLines<LogLine>(stack, g.name)).filter((l) => l.msg === 'stage done' && l.lane === 'bulk');
    assert.ok(bulk.length >= report.queued, `${bulk.length} geocodes from the bulk lane`);
  });

  it('takes (0,0) for no GPS: no place, geocode skipped, and the reason says why', async () => {
    const [id] = await uploadAll([await gpsJpeg(0, 0, 'null-island')]);
    assert.equal(await stack.waitFinal(id!, 60_000), 'complete');
    const v = await view(id!);
    assert.equal(v.place, null);
    assert.equal(v.stages.geocode, 'skipped');
    assert.match(v.placeReason ?? '', /no GPS: GPS 0,0/);
    void others;
  });
});
