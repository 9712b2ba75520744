import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PlaceTable } from '../../src/places/geonames-dump-reader.js';
import { PlaceIndex } from '../../src/places/place-index.js';

function table(places: [name: string, lat: number, lon: number][]): PlaceTable {
  return {
    count: places.length,
    geonameIds: Uint32Array.from(places, (_, i) => i + 1),
    lats: Float64Array.from(places, (p) => p[1]),
    lons: Float64Array.from(places, (p) => p[2]),
    population: Uint32Array.from(places, () => 1000),
    names: places.map((p) => p[0]),
    countryCodes: places.map(() => 'XX'),
    admin1Names: places.map(() => null),
    featureCodes: places.map(() => 'PPL'),
    newestRow: '2023-01-01',
  };
}

/** The index on made-up places, where the right answer is known exactly. */
describe('place index', () => {
  it('measures across the antimeridian: the town 10 km away on the other side wins', () => {
    const index = PlaceIndex.build(table([['west of the line', -16.8, -179.95], ['same side, far', -16.8, 179.0]]));
    const [hit] = index.nearest(-16.8, 179.95, 25);
    assert.equal(index.table.names[hit?.row ?? -1], 'west of the line');
    assert.ok(hit && Math.abs(hit.distanceKm - 10.65) < 0.1, `${hit?.distanceKm} km`);
  });

  it('measures over the pole, where degrees of longitude shrink to nothing', () => {
    const index = PlaceIndex.build(table([['same meridian, 0.4° south', 89.5, 170], ['over the pole', 89.95, -10]]));
    const [hit] = index.nearest(89.9, 170, 100);
    // 0.05° + 0.1° over the pole (16.7 km) beats 0.4° along the meridian (44.5 km).
    assert.equal(index.table.names[hit?.row ?? -1], 'over the pole');
    assert.ok(hit && Math.abs(hit.distanceKm - 16.68) < 0.1, `${hit?.distanceKm} km`);
  });

  it('returns nothing beyond the radius, and nearest first within it', () => {
    const index = PlaceIndex.build(table([['a', 10, 10], ['b', 10, 10.1], ['c', 10, 10.5]]));
    assert.deepEqual(index.nearest(10, 9, 25), []);
    assert.deepEqual(
      index.nearest(10, 10.09, 100, 3).map((h) => index.table.names[h.row]),
      ['b', 'a', 'c'],
    );
  });
});
