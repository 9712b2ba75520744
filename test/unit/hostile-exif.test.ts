import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import exifr from 'exifr';
import { decodeUserComment, extractExif, sanitise } from '../../src/imaging/exif.js';
import { exifColumns } from '../../src/workers/exif/exif-columns.js';
import { app1, craftedJpeg, tiff } from '../helpers/exif-builder.js';
import { assertDbSafeDeep, HOSTILE_EXIF_CASES } from '../helpers/hostile-exif-cases.js';

/** Escapes Postgres jsonb refuses: a lone surrogate (22P02) or NUL (22P05). */
const REFUSED_ESCAPE = /\\u(d[89ab][0-9a-f]{2}(?!\\ud[c-f])|(?<!\\ud[89ab][0-9a-f]{2})d[c-f][0-9a-f]{2}|0000)/i;

/** exifr as the exif stage calls it, minus the clean-up: what the crafted bytes really say. */
async function exifrRaw(jpeg: Buffer): Promise<Record<string, unknown>> {
  return (await exifr.parse(jpeg, { tiff: true, exif: true, gps: true, ifd1: false, interop: true, makerNote: false, userComment: true, mergeOutput: true, translateValues: false })) as Record<string, unknown>;
}

describe('crafted EXIF', () => {
  const files = new Map<string, Buffer>();

  before(async () => {
    for (const c of HOSTILE_EXIF_CASES) files.set(c.name, await craftedJpeg(c.spec));
  });

  it('builds valid JPEGs with the APP1 right after SOI', async () => {
    for (const [name, jpeg] of files) {
      assert.deepEqual([...jpeg.subarray(0, 4)], [0xff, 0xd8, 0xff, 0xe1], name);
      assert.equal(jpeg.subarray(6, 12).toString('latin1'), 'Exif\0\0', name);
      const { width, height, format } = await (await import('sharp')).default(jpeg).metadata();
      assert.deepEqual([format, width, height], ['jpeg', 64, 48], name);
    }
    assert.throws(() => app1(Buffer.alloc(70_000)), /does not fit/);
    assert.deepEqual([...tiff({ byteOrder: 'BE' }).subarray(0, 4)], [0x4d, 0x4d, 0, 42]);
  });

  for (const c of HOSTILE_EXIF_CASES) {
    it(`parses as intended: ${c.name}`, async () => {
      c.parsed(await exifrRaw(files.get(c.name)!));
    });
  }

  for (const c of HOSTILE_EXIF_CASES) {
    it(`extractExif keeps only text Postgres stores: ${c.name}`, async () => {
      const result = await extractExif(files.get(c.name)!);
      assertDbSafeDeep(result.exif);
      assertDbSafeDeep(result.raw);
      c.stored(result);
      // What the exif stage sends: the JSON text of both columns, with no escape jsonb refuses.
      for (const [column, v] of Object.entries(exifColumns(result.exif, result.raw))) {
        if (v.type !== 'jsonb' || v.value === null) continue;
        assert.equal(typeof v.value, 'string');
        assert.doesNotMatch(v.value as string, REFUSED_ESCAPE, column);
        assert.ok((v.value as string).length < 200_000, `${column} is ${(v.value as string).length} characters`);
      }
      // extractExif's output is clean by itself, not only once the column helper went over it.
      assert.doesNotMatch(JSON.stringify(result.raw) ?? '', REFUSED_ESCAPE);
      assert.doesNotMatch(JSON.stringify(result.exif), REFUSED_ESCAPE);
    });
  }

  it('decodes a UTF-16 UserComment with lone surrogates into replacement characters', () => {
    const unicode = (units: number[], le: boolean) => {
      const b = Buffer.alloc(8 + units.length * 2);
      b.write('UNICODE\0', 'latin1');
      units.forEach((u, i) => (le ? b.writeUInt16LE(u, 8 + i * 2) : b.writeUInt16BE(u, 8 + i * 2)));
      return b;
    };
    const hi = [0x48, 0x69, 0xd800, 0x21]; // "Hi" lone-high "!"
    assert.equal(decodeUserComment(unicode(hi, true)), 'Hi\ufffd!');
    assert.equal(decodeUserComment(unicode(hi, false)), 'Hi\ufffd!');
    assert.equal(decodeUserComment(unicode([0xdc00, 0x41, 0x42, 0x43], true)), '\ufffdABC');
    assert.equal(decodeUserComment(unicode([0x41, 0xd83d, 0xde00, 0x42], true)), 'A\u{1F600}B', 'a pair is kept');
  });

  it('sanitise bounds depth, keys, arrays and strings, and cleans every key and string', () => {
    let deep: unknown = { leaf: 'x\ud800' };
    for (let i = 0; i < 50; i++) deep = { [`k${i}`]: deep };
    const out = JSON.stringify(sanitise(deep));
    assert.ok(out.length < 200, out);
    const wide = Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`key\0${i}\udc00`, `v${i}\ud800`]));
    const w = sanitise(wide) as Record<string, unknown>;
    assert.equal(Object.keys(w).length, 300);
    assertDbSafeDeep(w);
    const arr = sanitise({ a: Array.from({ length: 100_000 }, (_, i) => `s${i}\ud800`) }) as { a: unknown[] };
    assert.equal(arr.a.length, 64);
    assertDbSafeDeep(arr);
    assert.equal(sanitise(`${'y'.repeat(1_998)}\u{1F600}tail`), `${'y'.repeat(1_998)}\u2026`);
    assert.equal(sanitise({ [`${'k'.repeat(99)}\u{1F600}`]: 1 }) && Object.keys(sanitise({ [`${'k'.repeat(99)}\u{1F600}`]: 1 }) as object)[0], 'k'.repeat(99));
    assert.deepEqual(sanitise([new Error('bad\ud800 block')]), ['bad\ufffd block']);
  });
});
