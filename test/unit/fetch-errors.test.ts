import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classify } from '../../src/shared/errors.js';
import { FetchError, httpStatusError, isRetryableStatus, parseRetryAfter, transportError } from '../../src/shared/net/fetch-errors.js';

describe('fetch errors', () => {
  it('says which statuses are worth retrying', () => {
    for (const s of [408, 425, 429, 500, 502, 503, 504]) assert.equal(isRetryableStatus(s), true, String(s));
    for (const s of [400, 401, 403, 404, 410, 422, 501, 505]) assert.equal(isRetryableStatus(s), false, String(s));
  });

  it('carries status and Retry-After, and maps onto the pipeline error classes', () => {
    const busy = httpStatusError('a.test', 503, '7');
    assert.equal(busy.code, 'http_status');
    assert.equal(busy.status, 503);
    assert.equal(busy.retryAfterMs, 7000);
    assert.equal(classify(busy), 'retryable');
    assert.equal(classify(httpStatusError('a.test', 404)), 'permanent');
    assert.equal(busy.message, 'a.test answered with HTTP status 503');
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:10 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')), 10_000);
    assert.equal(parseRetryAfter('soon'), undefined);
  });

  it('maps transport failures, keeps the low-level text out of the message, and leaves bugs alone', () => {
    const refused = transportError('a.test:81', Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:81'), { code: 'ECONNREFUSED' }));
    assert.ok(refused instanceof FetchError);
    assert.equal(refused.code, 'connect_failed');
    assert.equal(refused.retryable, true);
    assert.doesNotMatch(refused.message, /10\.0\.0\.7/);
    const tls = transportError('a.test', Object.assign(new Error('x'), { code: 'CERT_HAS_EXPIRED' }));
    assert.equal(tls?.retryable, false);
    assert.equal(transportError('a.test', new TypeError('bad header')), undefined);
    assert.equal(transportError('a.test', Object.assign(new Error('x'), { code: 'UND_ERR_INVALID_ARG' })), undefined);
  });
});
