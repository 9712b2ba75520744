import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeUserComment, extractExif, normalise } from '../src/imaging/exif.js';
import { photo } from './helpers/fixtures.js';

/** EXIF normalisation on the real fixture photos and on the value shapes cameras write. */
describe('EXIF', () => {
  it('reads GPS altitude above sea level from the iPhone and Nokia HEIC fixtures', async () => {
    const iphone = await extractExif(photo('heic/IMG_5195.HEIC'));
    assert.ok(Math.abs((iphone.exif.gps?.alt ?? NaN) - 260.56) < 0.01, `iPhone altitude ${iphone.exif.gps?.alt}`);
    const nokia = await extractExif(photo('heic/mobile/HMD_Nokia_8.3_5G.heif'));
    assert.ok(Math.abs((nokia.exif.gps?.alt ?? NaN) - 1942.42) < 0.01, `Nokia altitude ${nokia.exif.gps?.alt}`);
  });

  it('turns an altitude below sea level negative, whatever shape GPSAltitudeRef has', () => {
    const base = { latitude: 31.5, longitude: 35.5, GPSAltitude: 430 };
    assert.equal(normalise({ ...base, GPSAltitudeRef: Uint8Array.of(1) }).gps?.alt, -430);
    assert.equal(normalise({ ...base, GPSAltitudeRef: 1 }).gps?.alt, -430);
    assert.equal(normalise({ ...base, GPSAltitudeRef: [1] }).gps?.alt, -430);
    assert.equal(normalise({ ...base, GPSAltitudeRef: Uint8Array.of(0) }).gps?.alt, 430);
    assert.equal(normalise({ ...base }).gps?.alt, 430);
  });

  it('decodes UserComment in its character codes, and treats a blank one as none', () => {
    const code = (c: string) => Buffer.concat([Buffer.from(c, 'latin1'), Buffer.alloc(8 - c.length)]);
    assert.equal(decodeUserComment(Buffer.concat([code('ASCII'), Buffer.from('Grandma, summer 1972\0\0', 'latin1')])), 'Grandma, summer 1972');
    assert.equal(decodeUserComment(Buffer.concat([code('UNICODE'), Buffer.from('Zürich', 'utf16le')])), 'Zürich');
    assert.equal(decodeUserComment(Buffer.concat([code('UNICODE'), Buffer.from('Zürich', 'utf16le').swap16()])), 'Zürich');
    assert.equal(decodeUserComment(Buffer.concat([code(''), Buffer.from('café', 'utf8')])), 'café');
    assert.equal(decodeUserComment(Buffer.alloc(136)), null, 'all zeros (Canon) is no comment');
    assert.equal(decodeUserComment(Buffer.concat([code('ASCII'), Buffer.from('        ')])), null);
  });

  it('keeps the Interop block of a camera file and never stores the raw UserComment bytes', async () => {
    const { raw } = await extractExif(photo('jpg/exif-org/canon-ixus.jpg'));
    assert.equal(raw?.InteropIndex, 'R98');
    assert.equal(raw?.userComment, undefined);
    assert.equal(raw?.UserComment, undefined, 'its blank comment is left out');
  });
  it('takes (0,0), out-of-range values and contradicting or half-missing hemisphere refs for no GPS, with a note', () => {
    assert.deepEqual(normalise({ latitude: 0, longitude: 0, GPSLatitudeRef: 'N', GPSLongitudeRef: 'E' }).gps, null);
    assert.match(normalise({ latitude: 0, longitude: 0 }).gpsNote ?? '', /0,0/);
    assert.match(normalise({ latitude: 95, longitude: 10 }).gpsNote ?? '', /out of range/);
    assert.match(normalise({ latitude: 43.4, longitude: 11.8, GPSLatitudeRef: 'S', GPSLongitudeRef: 'E' }).gpsNote ?? '', /contradicts/);
    assert.match(normalise({ latitude: 43.4, longitude: 11.8, GPSLatitudeRef: 'N' }).gpsNote ?? '', /GPSLongitudeRef missing/);
    assert.deepEqual(normalise({ latitude: 43.4, longitude: -3.7, GPSLatitudeRef: 'N', GPSLongitudeRef: 'W' }).gps, { lat: 43.4, lon: -3.7, alt: null });
    assert.equal(normalise({ Make: 'x' }).gpsNote, null, 'no GPS tags: nothing to say');
  });
});
