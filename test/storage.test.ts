import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/shared/config.js';
import { PermanentError, RetryableError } from '../src/shared/errors.js';
import { Storage } from '../src/shared/storage.js';
import { LOCAL_S3_CREDENTIALS, startLocalS3 } from '../src/local-s3/run-local-s3.js';
import { freePort } from './helpers/stack.js';

/** How S3 answers map to error classes, against a real S3-compatible server (s3rver). */
describe('Storage errors', () => {
  let dir: string;
  let s3: { endpoint: string; close: () => Promise<void> };
  const storage = (env: Record<string, string>) =>
    new Storage(
      loadConfig({
        S3_ENDPOINT: s3.endpoint,
        S3_BUCKET: 'photopipe-storage-test',
        S3_ACCESS_KEY_ID: LOCAL_S3_CREDENTIALS.accessKeyId,
        S3_SECRET_ACCESS_KEY: LOCAL_S3_CREDENTIALS.secretAccessKey,
        ...env,
      }),
    );
  const put = (st: Storage) => st.put({ key: 't/p/original.jpg', body: Buffer.from('bytes'), contentType: 'image/jpeg', visibility: 'private' });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'photopipe-storage-'));
    s3 = await startLocalS3({ port: await freePort(), directory: dir, bucket: 'photopipe-storage-test' });
  });

  after(async () => {
    await s3.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores and reads back an object', async () => {
    const st = storage({});
    await put(st);
    assert.equal((await st.get('t/p/original.jpg')).toString(), 'bytes');
    st.close();
  });

  it('treats a missing bucket and refused credentials as retryable (an operator fixes them), a missing key as permanent', async () => {
    const noBucket = storage({ S3_BUCKET: 'no-such-bucket-here' });
    await assert.rejects(put(noBucket), (err) => err instanceof RetryableError && err.code === 's3_unavailable' && /NoSuchBucket/.test(err.message));
    noBucket.close();

    const badKeys = storage({ S3_ACCESS_KEY_ID: 'NOT-A-KNOWN-KEY' }); // s3rver checks the key id (InvalidAccessKeyId, 403)
    await assert.rejects(put(badKeys), (err) => err instanceof RetryableError && err.code === 's3_unavailable' && /403/.test(err.message));
    badKeys.close();

    const st = storage({});
    await assert.rejects(st.get('t/p/never-written.jpg'), (err) => err instanceof PermanentError && err.code === 's3_rejected');
    st.close();
  });

  it('treats an unreachable endpoint as retryable', async () => {
    const gone = storage({ S3_ENDPOINT: `http://127.0.0.1:${await freePort()}`, S3_TIMEOUT_MS: '2000' });
    await assert.rejects(put(gone), (err) => err instanceof RetryableError && err.code === 's3_unreachable');
    gone.close();
  });
});
