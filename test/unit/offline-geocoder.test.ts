import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createOfflineGeocoder } from '../../src/places/offline-geocoder.js';
import type { GeocodeResult, PlaceMatch, ReverseGeocoder } from '../../src/places/place-types.js';
import { gpsFixtures } from './manifest-reader.js';
import { PLACE_DIFFERENCES } from '../helpers/fixtures.js';

const EXPECTED_DIFFERENCES = PLACE_DIFFERENCES;

function placeOf(result: GeocodeResult): PlaceMatch {
  assert.ok(result.place, `expected a place, got: ${'reason' in result ? result.reason : ''}`);
  return result.place;
}

describe('offline geocoder', () => {
  let geocoder: ReverseGeocoder;
  before(async () => {
    geocoder = await createOfflineGeocoder();
  });

  it('gives every GPS fixture the manifest place, or the documented PPLX difference', async () => {
    const fixtures = gpsFixtures();
    assert.ok(fixtures.length >= 10, `only ${fixtures.length} GPS fixtures in the manifest`);
    let same = 0;
    for (const f of fixtures) {
      const place = placeOf(await geocoder.lookup(f.lat, f.lon));
      const difference = EXPECTED_DIFFERENCES[f.file];
      if (difference) {
        assert.equal(place.geonameId, difference.geonameId, `${f.file}: ${difference.why}`);
        assert.equal(place.name, difference.name);
        continue;
      }
      const sameId = place.geonameId === f.geonameId;
      const sameName = place.name === f.nearestCity && place.countryCode === f.country;
      assert.ok(sameId || sameName, `${f.file}: got ${place.name} ${place.geonameId}, manifest says ${f.nearestCity} ${f.geonameId}`);
      assert.ok(Math.abs(place.distanceKm - f.distanceKm) < 0.05, `${f.file}: ${place.distanceKm} km, manifest ${f.distanceKm} km`);
      same++;
    }
    assert.equal(same + Object.keys(EXPECTED_DIFFERENCES).length, fixtures.length);
  });

  it('fills in the whole place: admin1 name, English country name, centre, source', async () => {
    assert.deepEqual(placeOf(await geocoder.lookup(39.05134444444444, -94.28877222222222)), {
      geonameId: 4377664,
      name: 'Blue Springs',
      admin1: 'Missouri',
      countryCode: 'US',
      countryName: 'United States',
      lat: 39.01695,
      lon: -94.28161,
      distanceKm: 3.87,
      source: 'offline',
    });
    const arezzo = placeOf(await geocoder.lookup(43.46744833333334, 11.885126666663888));
    assert.equal(arezzo.admin1, 'Tuscany');
    assert.equal(arezzo.countryName, 'Italy');
  });

  it('finds the nearest town across the antimeridian and in Chukotka', async () => {
    assert.equal(placeOf(await geocoder.lookup(64.7, 177.5)).name, 'Anadyr');
    // No town of the data lies within 25 km of 180°, so the wrap shows with wider radii: Labasa
    // (179.36 E) for a point at 179.9 W, Egvekinot (179.12 W) for a point at 179.9 E.
    const wide = await createOfflineGeocoder({ maxDistanceKm: 100 });
    assert.equal(placeOf(await wide.lookup(-16.5, -179.9)).name, 'Labasa');
    const egvekinot = placeOf(await wide.lookup(66.32, 179.9));
    assert.equal(egvekinot.name, 'Egvekinot');
    assert.ok(Math.abs(egvekinot.distanceKm - 43.3) < 0.5, `${egvekinot.distanceKm} km`);
    // Inland Viti Levu and north of Taveuni: no town of 1000 within 25 km, but surely Fiji.
    for (const [lat, lon] of [
      [-17.8, 178.0],
      [-16.5, -179.9],
    ] as const) {
      const r = await geocoder.lookup(lat, lon);
      assert.equal(r.place, null);
      assert.equal(r.place === null && r.countryCode, 'FJ', `${lat},${lon}: ${JSON.stringify(r)}`);
    }
    // Cape Dezhnev, 40 km from the US maritime border: Russia, no town of 1000 within 25 km.
    const dezhnev = await geocoder.lookup(66.0, -169.8);
    assert.ok(dezhnev.place === null && dezhnev.countryCode === 'RU', JSON.stringify(dezhnev));
  });

  it('answers no place, with a reason and no country, at the poles and in open ocean', async () => {
    for (const [lat, lon] of [
      [89.9, 0],
      [-89.9, 0],
      [-89.9, 179.9],
      [-30, -120], // South Pacific
      [0, -30], // mid-Atlantic, which country-coder's generalised sea borders give to Brazil
      [41, 51], // middle of the Caspian Sea
    ] as const) {
      const r = await geocoder.lookup(lat, lon);
      assert.equal(r.place, null, `${lat},${lon}`);
      assert.ok(r.place === null && r.reason.startsWith('no town within 25 km'), `${lat},${lon}: ${JSON.stringify(r)}`);
      assert.equal(r.place === null && r.countryCode, undefined, `${lat},${lon}: ${JSON.stringify(r)}`);
    }
  });

  it('treats 0,0 and impossible coordinates as no GPS instead of a place in the Gulf of Guinea', async () => {
    for (const [lat, lon] of [
      [0, 0],
      [-0, 0],
      [NaN, 10],
      [91, 0],
      [0, 180.5],
      [Infinity, 0],
    ]) {
      const r = await geocoder.lookup(lat as number, lon as number);
      assert.ok(r.place === null && r.reason.startsWith('no GPS: '), `${lat},${lon}: ${JSON.stringify(r)}`);
    }
    // Wrong types from an untyped caller are still an answer, not a crash.
    const r = await geocoder.lookup('43.4' as unknown as number, undefined as unknown as number);
    assert.equal(r.place, null);
  });

  it('honours maxDistanceKm and an aborted signal', async () => {
    const near = await createOfflineGeocoder({ maxDistanceKm: 1 });
    const r = await near.lookup(39.05134444444444, -94.28877222222222);
    assert.equal(r.place, null, 'Blue Springs is 3.87 km away');
    assert.equal(r.place === null && r.countryCode, 'US');
    await assert.rejects(geocoder.lookup(43.47, 11.88, AbortSignal.abort()), { name: 'AbortError' });
  });
});
