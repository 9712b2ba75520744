import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { declaredSha256, parseSha256 } from '../../src/api/content-checksum.js';
import { HttpError } from '../../src/shared/errors.js';

const digest = createHash('sha256').update('photo bytes').digest();
const hex = digest.toString('hex');
const b64 = digest.toString('base64');
const b64url = digest.toString('base64url');

function invalid(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof HttpError);
    assert.equal(err.status, 400);
    assert.equal(err.code, 'invalid_checksum');
    assert.match(err.message, pattern);
    return true;
  };
}

describe('SHA-256 checksums as clients send them', () => {
  it('reads hex in any case and base64 in both alphabets, padded or not, as lower-case hex', () => {
    for (const form of [hex, hex.toUpperCase(), b64, b64.replace(/=$/, ''), b64url, ` ${hex} `]) assert.equal(parseSha256(form), hex, form);
  });

  it('refuses other lengths, other characters and non-canonical base64', () => {
    // The same 32 bytes with the last character's two spare bits set: not what any encoder writes.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const spareBits = `${b64.slice(0, 42)}${alphabet[alphabet.indexOf(b64[42] ?? 'A') | 1]}=`;
    assert.deepEqual(Buffer.from(spareBits, 'base64'), digest, 'Node decodes it to the same bytes');
    for (const bad of ['', hex.slice(1), `${hex}0`, `${hex.slice(0, 63)}g`, b64.slice(1), `${b64}=`, spareBits, createHash('sha512').update('x').digest('base64'), 'sha-256=abc']) {
      assert.equal(parseSha256(bad), null, bad);
    }
  });

  it('takes X-Content-SHA256, Digest (RFC 3230) and Repr-Digest (RFC 9530), ignoring other algorithms', () => {
    assert.equal(declaredSha256({}), null);
    assert.equal(declaredSha256({ 'x-content-sha256': hex }), hex);
    assert.equal(declaredSha256({ 'x-content-sha256': b64 }), hex);
    assert.equal(declaredSha256({ digest: `SHA-256=${b64}` }), hex);
    assert.equal(declaredSha256({ digest: `md5=HUXZLQLMuI/KZ5KDcJPcOA==, sha-256=${b64}` }), hex);
    assert.equal(declaredSha256({ 'repr-digest': `sha-256=:${b64}:` }), hex);
    assert.equal(declaredSha256({ 'repr-digest': `sha-512=:AAAA:, sha-256=:${b64}:;p=1` }), hex);
    // Only other algorithms: nothing declared that we can check.
    assert.equal(declaredSha256({ digest: 'MD5=HUXZLQLMuI/KZ5KDcJPcOA==' }), null);
    assert.equal(declaredSha256({ 'repr-digest': 'sha-512=:AAAA:' }), null);
    assert.equal(declaredSha256({ 'x-content-sha256': hex, digest: `sha-256=${b64}`, 'repr-digest': `sha-256=:${b64}:` }, { field: 'multipart field sha256', value: b64url }), hex);
  });

  it('refuses a declaration it cannot read, and declarations that disagree (400 invalid_checksum)', () => {
    const other = createHash('sha256').update('other bytes').digest();
    assert.throws(() => declaredSha256({ 'x-content-sha256': 'abc' }), invalid(/X-Content-SHA256/));
    assert.throws(() => declaredSha256({ digest: 'sha-256=abc' }), invalid(/Digest/));
    assert.throws(() => declaredSha256({ 'repr-digest': `sha-256=${b64}` }), invalid(/Repr-Digest.*byte sequence/));
    assert.throws(() => declaredSha256({ 'x-content-sha256': hex, 'repr-digest': `sha-256=:${other.toString('base64')}:` }), invalid(/X-Content-SHA256 and Repr-Digest declare different/));
    assert.throws(() => declaredSha256({}, { field: 'Upload-Metadata sha256', value: 'nope' }), invalid(/Upload-Metadata sha256/));
  });
});
