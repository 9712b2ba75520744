import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KNOWN_FAILURE_CODES, publicFailure } from '../../src/api/failure-reasons.js';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** Every failure code the code base can record for a photo: typed errors' first argument, the consumer's own codes, fetch error codes. */
function codesInSource(): Set<string> {
  const codes = new Set<string>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/new (?:PermanentError|RetryableError|UnavailableError)\(\s*'([a-z0-9_]+)'/g)) codes.add(m[1]!);
    for (const m of text.matchAll(/\{ code: '([a-z0-9_]+)', reason:/g)) codes.add(m[1]!);
    for (const m of text.matchAll(/'([a-z0-9_]+)' satisfies RejectionCode/g)) codes.add(m[1]!);
  }
  const fetchErrors = readFileSync(join(SRC, 'shared', 'net', 'fetch-errors.ts'), 'utf8');
  const union = /export type FetchErrorCode =([^;]+);/.exec(fetchErrors)?.[1] ?? '';
  for (const m of union.matchAll(/'([a-z0-9_]+)'/g)) codes.add(m[1]!);
  codes.add('timeout'); // StageTimeoutError
  return codes;
}

describe('public failure reasons', () => {
  it('has a public reason for every failure code the code base records', () => {
    const found = codesInSource();
    // API-only refusals never reach a photo's error.
    for (const apiOnly of ['empty_body', 'payload_too_large', 'unsupported_media_type', 'service_unavailable', 'internal', 'not_found']) found.delete(apiOnly);
    assert.ok(found.has('s3_unreachable') && found.has('worker_crashed') && found.has('image_too_large'), `scan found ${[...found].join(', ')}`);
    const missing = [...found].filter((c) => !KNOWN_FAILURE_CODES.includes(c));
    assert.deepEqual(missing, [], `codes without a public reason: ${missing.join(', ')}`);
  });

  it('never passes on S3 keys, hosts, socket errors or stack text', () => {
    const stored = [
      { stage: 'upload', code: 's3_unreachable', reason: 'S3 put acme/0b9c.../framed.jpg: connect ECONNREFUSED 10.1.2.3:9000' },
      { stage: 'upload', code: 's3_unavailable', reason: 'S3 put acme/1/original.jpg: 503 ServiceUnavailable' },
      { stage: 'upload', code: 's3_rejected', reason: 'S3 put acme/1/original.jpg: 400 InvalidArgument' },
      { stage: 'frame', code: 'unexpected', reason: "TypeError: Cannot read properties of undefined (reading 'x')\n    at run (/app/dist/workers/frame.js:12:3)" },
      { stage: 'ingest', code: 'blob_missing', reason: 'the raw bytes of photo 1234 are no longer in Redis (expired or deleted)' },
      { stage: 'exif', code: 'tenant_mismatch', reason: 'photo 1 does not belong to tenant other' },
      { stage: 'frame', code: 'corrupt_image', reason: 'cannot decode image (frame): corrupt or truncated image data (VipsJpeg: premature end of JPEG file)' },
      { stage: 'frame', code: 'timeout', reason: 'timeout in frame after 60000 ms' },
      { stage: 'upload', code: 'some_future_code', reason: 'details at 10.1.2.3' },
      { stage: 'upload', code: null, reason: 'details at 10.1.2.3' },
      { stage: 'upload', reason: 'details at 10.1.2.3' },
    ];
    for (const f of stored) {
      const p = publicFailure(f);
      assert.equal(p.stage, f.stage);
      assert.equal(p.code, f.code ?? null);
      for (const leak of ['10.1.2.3', 'acme/', 'ECONNREFUSED', '/app/', 'Redis', 'tenant other', 'Vips', '60000']) assert.ok(!p.reason.includes(leak), `${f.code}: "${p.reason}"`);
      assert.ok(p.reason.length > 0);
    }
    assert.equal(publicFailure({ stage: 'frame', code: 'timeout', reason: 'x' }).reason, 'processing took too long (frame)');
  });

  it('keeps our own wording about the image, and only that exact wording', () => {
    const ours = [
      'image is 20000x20000 (400.0 MP), above the 75.0 MP limit',
      'image is above the 75.0 MP pixel limit (thumbnail)',
      'image is above the 75.0 MP pixel limit (working copy)',
    ];
    for (const reason of ours) assert.equal(publicFailure({ stage: 'ingest', code: 'image_too_large', reason }).reason, reason);
    for (const reason of [`${ours[0]} at s3://bucket/key`, 'image is 1x1 (0.0 MP), above the 75.0 MP limit; see 10.0.0.1', 'image is above the 75.0 MP pixel limit (/tmp/x)']) {
      assert.equal(publicFailure({ stage: 'ingest', code: 'image_too_large', reason }).reason, 'the image has more pixels than the limit');
    }
    assert.equal(publicFailure({ stage: 'frame', reason: 'still failed: replay its dead letter too' }).reason, 'still failed: replay its dead letter too');
  });
});
