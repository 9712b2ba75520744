import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sanitizeFilename } from '../../src/api/filename.js';

describe('client file names', () => {
  it('keeps a display name, never a path', () => {
    assert.equal(sanitizeFilename('beach.jpg'), 'beach.jpg');
    assert.equal(sanitizeFilename('../../etc/passwd'), 'passwd');
    assert.equal(sanitizeFilename('C:\\Users\\me\\IMG_1.HEIC'), 'IMG_1.HEIC');
    assert.equal(sanitizeFilename('%2e%2e%2fsecret.png'), 'secret.png');
  });

  it('drops control and bidi characters, leading dots and empty results', () => {
    assert.equal(sanitizeFilename('a\u0000b\u0007c.jpg'), 'abc.jpg');
    assert.equal(sanitizeFilename('photo\u202egpj.exe'), 'photogpj.exe');
    assert.equal(sanitizeFilename('.hidden'), 'hidden');
    for (const empty of [undefined, null, '', '..', '.', '/', '\u0000']) assert.equal(sanitizeFilename(empty), null, JSON.stringify(empty));
  });

  it('bounds the length', () => {
    assert.equal(sanitizeFilename('x'.repeat(1_000))?.length, 255);
  });

  it('never cuts a surrogate pair in half, and replaces lone surrogates', () => {
    // The emoji is code units 254 and 255: a cut at 255 would keep its first half only.
    assert.equal(sanitizeFilename(`${'a'.repeat(254)}\u{1F600}.jpg`), 'a'.repeat(254));
    assert.equal(sanitizeFilename(`${'a'.repeat(253)}\u{1F600}.jpg`), `${'a'.repeat(253)}\u{1F600}`);
    assert.equal(sanitizeFilename('x\ud800y\udc00.jpg'), 'x\ufffdy\ufffd.jpg');
    assert.equal(sanitizeFilename(encodeURIComponent('caf\u00e9 \u{1F600}.jpg')), 'caf\u00e9 \u{1F600}.jpg');
  });
});
