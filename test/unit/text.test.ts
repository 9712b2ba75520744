import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { dbJsonText, dbText, truncateText, wellFormed, withoutNul } from '../../src/shared/text.js';

const EMOJI = '\u{1F600}'; // D83D DE00

describe('text Postgres stores', () => {
  it('replaces lone surrogates, wherever they are, and keeps pairs', () => {
    assert.equal(wellFormed('\ud800abc'), '\ufffdabc');
    assert.equal(wellFormed('ab\ud800c'), 'ab\ufffdc');
    assert.equal(wellFormed('abc\ud800'), 'abc\ufffd');
    assert.equal(wellFormed('\udc00'), '\ufffd');
    assert.equal(wellFormed('\udc00\ud800'), '\ufffd\ufffd', 'a reversed pair is two lone halves');
    assert.equal(wellFormed(`a${EMOJI}b`), `a${EMOJI}b`);
  });

  it('removes NUL', () => {
    assert.equal(withoutNul('a\0b\0\0c'), 'abc');
    assert.equal(withoutNul('abc'), 'abc');
  });

  it('cuts at a length without splitting a surrogate pair', () => {
    const s = `${'a'.repeat(9)}${EMOJI}${'b'.repeat(9)}`; // the emoji is code units 9 and 10
    assert.equal(truncateText(s, 10), 'a'.repeat(9), 'the pair that does not fit goes whole');
    assert.equal(truncateText(s, 11), `${'a'.repeat(9)}${EMOJI}`);
    assert.equal(truncateText(s, 9), 'a'.repeat(9));
    assert.equal(truncateText(s, 11, '\u2026'), `${'a'.repeat(9)}\u2026`, 'the ellipsis counts: the cut moves to 10, mid-pair, and backs off');
    assert.equal(truncateText(s, 12, '\u2026'), `${'a'.repeat(9)}${EMOJI}\u2026`);
    assert.equal(truncateText(s, 100, '\u2026'), s, 'short enough: unchanged, no ellipsis');
    assert.equal(truncateText(EMOJI, 1), '');
    assert.equal(truncateText('abc', 0), '');
    assert.equal(truncateText('abc', 1, '\u2026'), '\u2026');
    for (let max = 0; max <= s.length; max++) {
      for (const ellipsis of ['', '\u2026']) {
        const t = truncateText(s, max, ellipsis);
        assert.ok(t.isWellFormed(), `max ${max} ${JSON.stringify(ellipsis)}`);
        assert.ok(t.length <= Math.max(max, ellipsis.length), `max ${max}: ${t.length}`);
      }
    }
  });

  it('dbText: well-formed, without NUL, bounded', () => {
    assert.equal(dbText('a\0\ud800b'), 'a\ufffdb');
    assert.equal(dbText(`\0${'x'.repeat(4)}${EMOJI}`, 5), 'xxxx');
    assert.equal(dbText(`${'x'.repeat(10)}`, 5, '\u2026'), 'xxxx\u2026');
  });

  it('dbJsonText: every string value and key, at any depth; JSON.stringify otherwise unchanged', () => {
    const v = {
      ok: 'plain',
      ['k\ud800\0']: ['a\ud800', { ['\0deep']: { deeper: ['\udc00', 1, true, null] } }],
      when: new Date('2024-01-02T03:04:05Z'),
      gone: undefined,
      nan: NaN,
    };
    const text = dbJsonText(v);
    assert.ok(text !== undefined);
    assert.ok(!/\\u(d[89a-f][0-9a-f]{2}|0000)/i.test(text), text);
    assert.deepEqual(JSON.parse(text), {
      ok: 'plain',
      ['k\ufffd']: ['a\ufffd', { deep: { deeper: ['\ufffd', 1, true, null] } }],
      when: '2024-01-02T03:04:05.000Z',
      nan: null,
    });
    assert.equal(dbJsonText({ a: 1, b: ['x'] }), JSON.stringify({ a: 1, b: ['x'] }));
    assert.equal(dbJsonText(undefined), undefined);
    assert.equal(dbJsonText('\ud800'), JSON.stringify('\ufffd'));
  });

  it('dbJsonText: deep nesting and large arrays', () => {
    let deep: unknown = 'bottom\ud800';
    for (let i = 0; i < 1_000; i++) deep = { [`l${i}\0`]: [deep] };
    const text = dbJsonText(deep) ?? '';
    assert.ok(!/\\u(d[89a-f][0-9a-f]{2}|0000)/i.test(text));
    assert.ok(text.includes('bottom\ufffd'));
    const big = Array.from({ length: 100_000 }, (_, i) => (i % 2 ? `v${i}\ud800` : i));
    const parsed = JSON.parse(dbJsonText(big) ?? '[]') as unknown[];
    assert.equal(parsed.length, 100_000);
    assert.equal(parsed[1], 'v1\ufffd');
  });
});
