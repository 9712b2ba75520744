import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { decodeCursor, encodeCursor, intParam, isListPosition } from '../../src/api/query.js';
import { HttpError } from '../../src/shared/errors.js';

describe('query values', () => {
  it('takes list positions exactly as the API writes them, with real calendar dates', () => {
    for (const ok of ['2025-01-01T00:00:00.123456Z', '2024-02-29T23:59:59.999999Z', '0001-01-01T00:00:00.000000Z', '9999-12-31T23:59:59.999999Z', '0099-03-01T00:00:00.000000Z']) {
      assert.ok(isListPosition(ok), ok);
    }
    for (const bad of [
      '1', '', '2024-13-45T00:00:00Z', '2024-13-01T00:00:00.000000Z', '2023-02-29T00:00:00.000000Z', '2024-04-31T00:00:00.000000Z',
      '2024-00-10T00:00:00.000000Z', '2024-01-00T00:00:00.000000Z', '2024-01-01T24:00:00.000000Z', '2024-01-01T00:60:00.000000Z',
      '2024-01-01T00:00:60.000000Z', '0000-01-01T00:00:00.000000Z', '10000-01-01T00:00:00.000000Z', '+02024-01-01T00:00:00.000000Z',
      '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000000+00:00', '2024-01-01 00:00:00.000000Z', ' 2024-01-01T00:00:00.000000Z',
      '2024-01-01T00:00:00.000000Z\n', 'infinity', 'epoch', '２０２４-01-01T00:00:00.000000Z',
    ]) {
      assert.ok(!isListPosition(bad), JSON.stringify(bad));
    }
  });

  it('decodes only cursors encodeCursor makes', () => {
    const c = { createdAt: '2025-01-01T00:00:00.123456Z', id: randomUUID() };
    assert.deepEqual(decodeCursor(encodeCursor(c)), c);
    const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    for (const bad of [enc(['1', c.id]), enc([c.createdAt]), enc([c.createdAt, c.id, 1]), enc([c.createdAt, 'x']), enc({ ...c }), enc(null), 'not base64!', 'x'.repeat(201), '']) {
      assert.throws(() => decodeCursor(bad), (err: unknown) => err instanceof HttpError && err.status === 400 && err.code === 'invalid_cursor', bad);
    }
  });

  it('takes whole numbers in range only; empty or absent means the default', () => {
    const limit = intParam(1, 200, 50);
    assert.equal(limit.parse(undefined), 50);
    assert.equal(limit.parse(''), 50);
    assert.equal(limit.parse('7'), 7);
    assert.equal(limit.parse('007'), 7);
    for (const bad of ['0', '201', '-1', '1e2', '0x10', '1.0', ' 5', '5 ', '+5', 'NaN', 'Infinity', '9999999999', ['1', '2'], 5]) {
      assert.ok(!limit.safeParse(bad).success, JSON.stringify(bad));
    }
  });
});
