import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sniffImageFormat } from '../../src/imaging/sniff.js';

const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

describe('format sniffing by magic bytes', () => {
  it('recognises every supported format', () => {
    assert.equal(sniffImageFormat(bytes([0xff, 0xd8, 0xff, 0xe0])), 'jpeg');
    assert.equal(sniffImageFormat(bytes([0x89], 'PNG', [0x0d, 0x0a, 0x1a, 0x0a])), 'png');
    assert.equal(sniffImageFormat(bytes('RIFF', [1, 2, 3, 4], 'WEBPVP8 ')), 'webp');
    assert.equal(sniffImageFormat(bytes('II', [0x2a, 0])), 'tiff');
    assert.equal(sniffImageFormat(bytes('MM', [0, 0x2a])), 'tiff');
    assert.equal(sniffImageFormat(bytes('GIF89a')), 'gif');
    assert.equal(sniffImageFormat(bytes('GIF87a')), 'gif');
    assert.equal(sniffImageFormat(bytes([0, 0, 0, 0x18], 'ftypheic', [0, 0, 0, 0], 'mif1heic')), 'heif');
    assert.equal(sniffImageFormat(bytes([0, 0, 0, 0x18], 'ftypmif1', [0, 0, 0, 0], 'mif1avif')), 'avif', 'AVIF wins over the generic mif1 brand');
  });

  it('refuses what is not an image, however it is named', () => {
    for (const b of [bytes(''), bytes('hello world'), bytes('%PDF-1.7'), bytes([0xff, 0xd8]), bytes('RIFF', [0, 0, 0, 0], 'WAVE'), bytes([0, 0, 0, 0x18], 'ftypmp42', [0, 0, 0, 0], 'isommp42')]) {
      assert.equal(sniffImageFormat(b), null, JSON.stringify(b.toString('latin1')));
    }
  });
});
