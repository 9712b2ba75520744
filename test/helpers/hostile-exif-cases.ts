import assert from 'node:assert/strict';
import type { NormalisedExif } from '../../src/imaging/exif.js';
import { ascii, gpsEntries, LONG, shorts, TAG, undefinedBytes, userComment, xpString, type ExifSpec } from './exif-builder.js';

/** What the exif stage keeps of a file: the normalised fields and the raw tags (its two jsonb columns). */
export interface StoredExif {
  exif: NormalisedExif | null;
  raw: Record<string, unknown> | null;
}

/**
 * Crafted EXIF that once failed whole photos (lone surrogates, a cut inside a surrogate pair: both
 * rejected by Postgres jsonb) or that could (NUL bytes, invalid UTF-8, lying counts, thousands of
 * tags, IFD loops). `parsed` checks, on exifr's own output, that the file carries what the case
 * says it does, so a case cannot pass because the builder wrote something harmless. `stored`
 * checks what is kept of it: by extractExif, and read back from Postgres.
 */
export interface HostileExifCase {
  name: string;
  spec: ExifSpec;
  parsed(out: Record<string, unknown>): void;
  stored(s: StoredExif): void;
}

/** The cuts in src/imaging/exif.ts these cases aim at: normalised strings and raw strings. */
export const NORMALISED_CUT = 200;
export const RAW_CUT = 2_000;

const EMOJI = '\u{1F600}'; // two UTF-16 code units: D83D DE00
const TEXT = 'Holiday in Z\u00fcrich';

/** A string of `length` code units whose code units `at` and `at + 1` are one emoji. */
function emojiAt(at: number, length: number, fill: string): string {
  return `${fill.repeat(at)}${EMOJI}${fill.repeat(length - at - 2)}`;
}

function bytesOf(v: unknown): Buffer {
  assert.ok(v instanceof Uint8Array, `expected bytes, got ${typeof v}`);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** The UTF-16 code units after the 8-byte character code of a UserComment. */
function commentUnits(out: Record<string, unknown>, order: 'LE' | 'BE'): number[] {
  const b = bytesOf(out.userComment);
  assert.equal(b.subarray(0, 8).toString('latin1'), 'UNICODE\0');
  const units: number[] = [];
  for (let i = 8; i + 1 < b.length; i += 2) units.push(order === 'LE' ? b.readUInt16LE(i) : b.readUInt16BE(i));
  return units;
}

const units = (s: string) => Array.from({ length: s.length }, (_, i) => s.charCodeAt(i));

export const HOSTILE_EXIF_CASES: HostileExifCase[] = [
  {
    name: 'UTF-16 UserComment starting with a lone high surrogate (little-endian, with GPS)',
    spec: { byteOrder: 'LE', ifd0: [ascii(TAG.Make, 'Canon'), ascii(TAG.Model, 'EOS 40D')], exif: [userComment.unicode([0xd800, ...units(TEXT)], 'LE')], gps: gpsEntries(47.3769, 8.5417) },
    parsed(out) {
      assert.deepEqual(commentUnits(out, 'LE').slice(0, 2), [0xd800, 0x48]);
      assert.ok(Math.abs((out.latitude as number) - 47.3769) < 0.001);
    },
    stored({ exif, raw }) {
      assert.equal(raw?.UserComment, `\ufffd${TEXT}`);
      assert.equal(exif?.make, 'Canon');
      assert.ok(Math.abs((exif?.gps?.lat ?? 0) - 47.3769) < 0.001);
    },
  },
  {
    name: 'UTF-16 UserComment with a lone high surrogate in the middle (big-endian file)',
    spec: { byteOrder: 'BE', ifd0: [ascii(TAG.Make, 'NIKON')], exif: [userComment.unicode([...units('Holiday'), 0xd800, ...units(' in Z\u00fcrich')], 'BE')] },
    parsed(out) {
      assert.equal(commentUnits(out, 'BE')[7], 0xd800);
      assert.equal(out.Make, 'NIKON');
    },
    stored({ exif, raw }) {
      assert.equal(raw?.UserComment, 'Holiday\ufffd in Z\u00fcrich');
      assert.equal(exif?.make, 'NIKON');
    },
  },
  {
    name: 'UTF-16 UserComment ending in a lone high surrogate',
    spec: { exif: [userComment.unicode([...units(TEXT), 0xd800], 'LE')] },
    parsed(out) {
      assert.equal(commentUnits(out, 'LE').at(-1), 0xd800);
    },
    stored({ raw }) {
      assert.equal(raw?.UserComment, `${TEXT}\ufffd`);
    },
  },
  {
    name: 'UTF-16 UserComment with lone low surrogates and a reversed pair',
    spec: { exif: [userComment.unicode([0xdc00, ...units('ok'), 0xdc00, 0xd800, ...units(' end')], 'LE')] },
    parsed(out) {
      assert.deepEqual(commentUnits(out, 'LE').slice(0, 5), [0xdc00, 0x6f, 0x6b, 0xdc00, 0xd800]);
    },
    stored({ raw }) {
      assert.equal(raw?.UserComment, '\ufffdok\ufffd\ufffd end');
    },
  },
  {
    name: `a 3,000-character UTF-16 UserComment whose ${NORMALISED_CUT}-unit cut falls inside an emoji`,
    spec: { exif: [userComment.unicode(emojiAt(NORMALISED_CUT - 1, 3_000, 'c'), 'LE')] },
    parsed(out) {
      const u = commentUnits(out, 'LE');
      assert.equal(u.length, 3_000);
      assert.deepEqual(u.slice(NORMALISED_CUT - 1, NORMALISED_CUT + 1), [0xd83d, 0xde00]);
    },
    stored({ raw }) {
      // The emoji does not fit in the cut: it goes whole, never half.
      assert.equal(raw?.UserComment, 'c'.repeat(NORMALISED_CUT - 1));
    },
  },
  {
    // Where the raw cut falls depends on whether the ellipsis counts: it fell at RAW_CUT (the
    // ImageDescription), it falls at RAW_CUT - 1 now (the Artist). Both are split pairs if cut blindly.
    name: `3,000-character ImageDescription and Artist (UTF-8) whose ${RAW_CUT}-unit cut falls inside an emoji`,
    spec: { ifd0: [ascii(TAG.ImageDescription, emojiAt(RAW_CUT - 1, 3_000, 'd')), ascii(TAG.Artist, emojiAt(RAW_CUT - 2, 3_000, 'a'))] },
    parsed(out) {
      const d = out.ImageDescription as string;
      const a = out.Artist as string;
      assert.equal(d.length, 3_000);
      assert.equal(d.slice(RAW_CUT - 1, RAW_CUT + 1), EMOJI);
      assert.equal(a.slice(RAW_CUT - 2, RAW_CUT), EMOJI);
    },
    stored({ raw }) {
      assert.equal(raw?.ImageDescription, `${'d'.repeat(RAW_CUT - 1)}\u2026`);
      assert.equal(raw?.Artist, `${'a'.repeat(RAW_CUT - 2)}\u2026`, 'the emoji does not fit before the ellipsis: it goes whole');
    },
  },
  {
    name: `a Make whose ${NORMALISED_CUT}-unit cut falls inside an emoji (the normalised exif column)`,
    spec: { ifd0: [ascii(TAG.Make, emojiAt(NORMALISED_CUT - 1, 300, 'm'))] },
    parsed(out) {
      assert.equal((out.Make as string).slice(NORMALISED_CUT - 1, NORMALISED_CUT + 1), EMOJI);
    },
    stored({ exif, raw }) {
      assert.equal(exif?.make, 'm'.repeat(NORMALISED_CUT - 1));
      assert.equal((raw?.Make as string).length, 300, 'the raw tag is under its own limit, emoji intact');
    },
  },
  {
    name: 'XPComment and XPTitle (UCS-2, which exifr decodes code unit by code unit) with lone surrogates',
    spec: { ifd0: [xpString(TAG.XPComment, [...units('Trip'), 0xd800, ...units(' 2024')]), xpString(0x9c9b, [...units('Ti'), 0xdc00, ...units('tle')])] },
    parsed(out) {
      assert.equal(out.XPComment, 'Trip\ud800 2024');
      assert.equal(out.XPTitle, 'Ti\udc00tle');
    },
    stored({ raw }) {
      assert.equal(raw?.XPComment, 'Trip\ufffd 2024');
      assert.equal(raw?.XPTitle, 'Ti\ufffdtle');
    },
  },
  {
    name: 'NUL bytes inside ASCII fields and inside a UTF-16 UserComment',
    spec: {
      ifd0: [ascii(TAG.ImageDescription, 'before\0after'), ascii(TAG.Make, 'Ca\0non'), ascii(TAG.Artist, 'A\0\0B')],
      exif: [userComment.unicode('x\0y\0\0z', 'LE')],
    },
    parsed(out) {
      assert.equal(out.ImageDescription, 'before\0after');
      assert.equal(out.Make, 'Ca\0non');
      assert.equal(out.Artist, 'A\0\0B');
      assert.deepEqual(commentUnits(out, 'LE'), units('x\0y\0\0z'));
    },
    stored({ exif, raw }) {
      assert.equal(raw?.ImageDescription, 'beforeafter');
      assert.equal(raw?.Artist, 'AB');
      assert.equal(exif?.make, 'Ca non', 'a control character in a normalised field is a space');
      assert.equal(raw?.UserComment, 'x y z');
    },
  },
  {
    name: 'an ASCII UserComment with NUL bytes and bytes above 0x7F',
    spec: { exif: [userComment.ascii(Buffer.from([...Buffer.from('Grandma'), 0, 0xe9, 0xff, ...Buffer.from(' 1972')]))] },
    parsed(out) {
      const b = bytesOf(out.userComment);
      assert.equal(b.subarray(0, 8).toString('latin1'), 'ASCII\0\0\0');
      assert.equal(b[15], 0);
    },
    stored({ raw }) {
      assert.equal(raw?.UserComment, 'Grandma \u00e9\u00ff 1972');
    },
  },
  {
    name: 'invalid UTF-8 (stray continuation, overlong, an encoded surrogate) in an "undefined" UserComment and an ASCII field',
    spec: {
      ifd0: [ascii(TAG.ImageDescription, Buffer.from([0x61, 0xed, 0xa0, 0x80, 0x62, 0xc0, 0xaf, 0x80]))],
      exif: [userComment.undefinedCode(Buffer.from([0xff, 0xfe, 0x80, 0x41, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xf4, 0x90, 0x80, 0x80, 0x42]))],
    },
    parsed(out) {
      assert.deepEqual([...bytesOf(out.userComment).subarray(0, 8)], [0, 0, 0, 0, 0, 0, 0, 0]);
      assert.ok((out.ImageDescription as string).includes('\ufffd'), 'exifr decodes ASCII fields as UTF-8, replacing what is invalid');
    },
    stored({ raw }) {
      assert.match(String(raw?.UserComment), /^\ufffd+A\ufffd+B$/);
      assert.match(String(raw?.ImageDescription), /^a\ufffd+b\ufffd+$/);
    },
  },
  {
    name: 'value counts far beyond the segment (2^31 ASCII characters, 2^28 LONGs, 2^30 undefined bytes)',
    spec: {
      ifd0: [ascii(TAG.Make, 'Canon'), { ...ascii(TAG.ImageDescription, 'a description long enough to be out of line'), count: 0x7fffffff }, { tag: 0xc001, type: LONG, value: [1, 2], count: 0x10000000 }],
      exif: [{ ...undefinedBytes(0xa40b, Buffer.alloc(16)), count: 0x40000000 }, userComment.unicode('still here', 'LE')],
    },
    parsed(out) {
      // exifr gives up on the block with the lie and says so; nothing was allocated for it.
      assert.ok(Array.isArray(out.errors) || out.Make === undefined, JSON.stringify(Object.keys(out)));
    },
    stored({ raw }) {
      // What exifr could not read is left out; why is kept as text.
      for (const e of (raw?.errors as unknown[] | undefined) ?? []) assert.equal(typeof e, 'string');
    },
  },
  {
    name: 'a 20,000-value SHORT array',
    spec: { ifd0: [ascii(TAG.Make, 'Canon'), shorts(0xc002, Array.from({ length: 20_000 }, (_, i) => i))] },
    parsed(out) {
      assert.equal((out[String(0xc002)] as Uint16Array).length, 20_000);
    },
    stored({ exif, raw }) {
      assert.equal(exif?.make, 'Canon');
      assert.deepEqual(raw?.[String(0xc002)], { binaryBytes: 40_000 });
    },
  },
  {
    name: '2,500 tags in IFD0',
    spec: {
      ifd0: [ascii(TAG.Make, 'Canon'), ...Array.from({ length: 2_500 }, (_, i) => (i % 2 === 0 ? shorts(0xc100 + i, [i]) : ascii(0xc100 + i, `value ${i}`)))],
    },
    parsed(out) {
      assert.ok(Object.keys(out).length > 2_000, `${Object.keys(out).length} keys`);
    },
    stored({ exif, raw }) {
      assert.equal(exif?.make, 'Canon');
      assert.ok(Object.keys(raw ?? {}).length <= 300, `${Object.keys(raw ?? {}).length} raw keys`);
    },
  },
  {
    name: 'IFD pointers that loop (Interop pointing at the Exif IFD, IFD0 linking to itself)',
    spec: { ifd0: [ascii(TAG.Make, 'Canon')], exif: [userComment.unicode('loop\ud800', 'LE')], loopPointers: true },
    parsed(out) {
      assert.equal(out.Make, 'Canon');
    },
    stored({ exif, raw }) {
      assert.equal(exif?.make, 'Canon');
      assert.equal(raw?.UserComment, 'loop\ufffd');
    },
  },
];

/** Asserts that every string and object key in `v`, at any depth, is well-formed UTF-16 without NUL. */
export function assertDbSafeDeep(v: unknown, path = '$'): void {
  if (typeof v === 'string') {
    assert.ok(v.isWellFormed(), `${path} is not well-formed: ${JSON.stringify(v.slice(0, 80))}`);
    assert.ok(!v.includes('\0'), `${path} contains NUL`);
  } else if (Array.isArray(v)) {
    v.forEach((x, i) => assertDbSafeDeep(x, `${path}[${i}]`));
  } else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      assertDbSafeDeep(k, `${path} key ${JSON.stringify(k)}`);
      assertDbSafeDeep(x, `${path}.${k}`);
    }
  }
}
