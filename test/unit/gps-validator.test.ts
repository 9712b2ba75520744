import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validGps } from '../../src/places/gps-validator.js';

function note(lat: unknown, lon: unknown, refs?: { latRef: unknown; lonRef: unknown }): string {
  const r = validGps(lat, lon, refs);
  assert.equal(r.ok, false, `${String(lat)},${String(lon)} should be rejected`);
  return r.ok ? '' : r.note;
}

describe('validGps', () => {
  it('accepts real positions, including the equator, the prime meridian, the poles and ±180', () => {
    assert.deepEqual(validGps(43.4674, 11.8851), { ok: true, lat: 43.4674, lon: 11.8851 });
    assert.deepEqual(validGps(0, 11.5), { ok: true, lat: 0, lon: 11.5 });
    assert.deepEqual(validGps(51.4779, 0), { ok: true, lat: 51.4779, lon: 0 });
    assert.deepEqual(validGps(-90, 180), { ok: true, lat: -90, lon: 180 });
    assert.deepEqual(validGps(90, -180), { ok: true, lat: 90, lon: -180 });
    const negZero = validGps(-0, 12);
    assert.ok(negZero.ok && Object.is(negZero.lat, 0), '-0 becomes 0');
  });

  it('rejects 0,0, which cameras without a fix write', () => {
    assert.match(note(0, 0), /0,0/);
    assert.match(note(-0, 0), /0,0/);
    assert.match(note(1e-9, -1e-9), /0,0/);
  });

  it('rejects missing, non-numeric, non-finite and out-of-range values with a note', () => {
    assert.equal(note(undefined, undefined), 'no GPS coordinates');
    assert.match(note(null, 10), /latitude missing/);
    assert.match(note(10, undefined), /longitude missing/);
    assert.match(note('43.46', 11), /not numbers \("43.46", 11\)/);
    assert.match(note([43, 28, 2.8], [11, 53, 6]), /array of 3/);
    assert.match(note({}, 1), /object/);
    assert.match(note(NaN, 1), /not finite/);
    assert.match(note(1, -Infinity), /not finite/);
    assert.match(note(90.0001, 1), /latitude 90.0001 is out of range/);
    assert.match(note(-91, 1), /out of range/);
    assert.match(note(1, 180.5), /longitude 180.5 is out of range/);
    assert.match(note(1, -361), /out of range/);
  });

  it('rejects a missing or contradicting hemisphere ref when the caller passes the refs', () => {
    assert.deepEqual(validGps(-33.9, 151.2, { latRef: 'S', lonRef: 'E' }), { ok: true, lat: -33.9, lon: 151.2 });
    assert.deepEqual(validGps(40.4, -3.7, { latRef: ' n ', lonRef: 'w' }), { ok: true, lat: 40.4, lon: -3.7 });
    assert.match(note(33.9, 151.2, { latRef: undefined, lonRef: 'E' }), /GPSLatitudeRef missing/);
    assert.match(note(33.9, 151.2, { latRef: 'N', lonRef: '' }), /GPSLongitudeRef missing/);
    assert.match(note(33.9, 151.2, { latRef: 'X', lonRef: 'E' }), /"X" is not N or S/);
    assert.match(note(33.9, 151.2, { latRef: 'S', lonRef: 'E' }), /contradicts/);
  });

  it('never throws, whatever it is given', () => {
    const odd: unknown[] = [Symbol('x'), 10n, () => 1, new Date(), Object.create(null), 'x'.repeat(10_000), true];
    for (const a of odd) for (const b of odd) assert.equal(validGps(a, b).ok, false);
    assert.equal(validGps(1, 1, { latRef: Symbol('N'), lonRef: Object.create(null) }).ok, false);
  });
});
