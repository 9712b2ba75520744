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
});
