import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { isDataRejection, isDbUnavailable, permanentIfDataRejection } from '../../src/shared/db.js';
import { classify, PermanentError, UnavailableError } from '../../src/shared/errors.js';
import { createLogger } from '../../src/shared/logger.js';
import { acceptPhoto, type AcceptDeps } from '../../src/pipeline/accept-photo.js';

/** A pg error as the driver builds it from Postgres' ErrorResponse (the real ones: test/hostile-exif.test.ts). */
function pgError(code: string, message: string, detail?: string): pg.DatabaseError {
  const err = new pg.DatabaseError(message, message.length, 'error');
  err.code = code;
  err.detail = detail;
  return err;
}

describe('database rejections of a value', () => {
  it('are told apart by SQLSTATE: data exceptions and integrity violations no retry cures', () => {
    for (const code of ['22P02', '22P05', '22021', '22001', '22003', '22007', '22008', '23000', '23001', '23502', '23503', '23514']) {
      assert.equal(isDataRejection(pgError(code, 'x')), true, code);
    }
    // Unique and exclusion violations are handled by callers; the rest are not about a value.
    for (const code of ['23505', '23P01', '40001', '40P01', '57014', '57P01', '53300', '08006', '42601', '42P01', 'XX000']) {
      assert.equal(isDataRejection(pgError(code, 'x')), false, code);
    }
  });

  it('only from Postgres: another error with a look-alike code is not one', () => {
    assert.equal(isDataRejection(Object.assign(new Error('x'), { code: '22P02' })), false);
    assert.equal(isDataRejection({ code: '22P02' }), false);
    assert.equal(isDataRejection(null), false);
    assert.equal(isDataRejection(pgError('22P02', 'x')) && isDbUnavailable(pgError('22P02', 'x')), false);
  });

  it('become a permanent invalid_data failure with SQLSTATE, message and detail; other errors are left as they are', () => {
    const rejected = pgError('22P02', 'invalid input syntax for type json', 'Unicode low surrogate must follow a high surrogate.');
    const err = permanentIfDataRejection(rejected);
    assert.ok(err instanceof PermanentError);
    assert.equal(err.code, 'invalid_data');
    assert.equal(classify(err), 'permanent');
    assert.equal(err.cause, rejected);
    assert.equal(err.message, 'the database rejected a value: 22P02: invalid input syntax for type json (Unicode low surrogate must follow a high surrogate.)');
    const other = pgError('40001', 'could not serialize access');
    assert.equal(permanentIfDataRejection(other), other);
    assert.equal(classify(permanentIfDataRejection(other)), 'retryable');
    const plain = new Error('boom');
    assert.equal(permanentIfDataRejection(plain), plain);
    // A long detail is bounded.
    assert.ok(permanentIfDataRejection(pgError('22001', 'value too long', 'd'.repeat(10_000))).message.length < 400);
  });

  it('refuse an upload for good (invalid_data) instead of sending the client back later, and leave nothing behind', async () => {
    const deleted: string[] = [];
    const deps = (insertError: Error): AcceptDeps => ({
      config: { UPLOAD_MAX_BYTES: 1_000_000 },
      log: createLogger({ LOG_LEVEL: 'silent' }, { role: 'test' }, 'stderr'),
      blobs: { key: (id: string) => `blob:${id}:raw`, put: () => Promise.resolve(), delete: (id: string) => Promise.resolve(void deleted.push(id)) } as unknown as AcceptDeps['blobs'],
      intake: { insertQueued: () => Promise.reject(insertError), deleteQueued: () => Promise.resolve() } as unknown as AcceptDeps['intake'],
      broker: { publishToStage: () => Promise.reject(new Error('must not publish')) } as unknown as AcceptDeps['broker'],
    });
    const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, ...Buffer.alloc(60)]);
    await assert.rejects(acceptPhoto(deps(pgError('22021', 'invalid byte sequence for encoding "UTF8": 0x00')), { tenantId: 't', bytes: jpeg, filename: 'a' }), (err: unknown) => {
      assert.ok(err instanceof PermanentError && !(err instanceof UnavailableError));
      assert.equal(err.code, 'invalid_data');
      return true;
    });
    assert.equal(deleted.length, 1, 'the stored bytes were removed again');
    await assert.rejects(acceptPhoto(deps(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), { tenantId: 't', bytes: jpeg, filename: 'a' }), UnavailableError);
  });
});
