import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, longestRetryDelayMs } from '../../src/shared/config.js';
import { PIPELINE, STAGES } from '../../src/pipeline/photo-pipeline.js';

describe('configuration', () => {
  it('has working defaults for a development machine', () => {
    const c = loadConfig({});
    assert.equal(c.PORT, 8080);
    assert.equal(c.QUEUE_TYPE, 'quorum');
    assert.deepEqual(c.RETRY_DELAYS_MS, [1_000, 5_000, 30_000, 120_000, 600_000]);
    assert.ok(Object.isFrozen(c));
  });

  it('takes per-stage defaults from the pipeline declaration, and overrides per stage', () => {
    const c = loadConfig({ STAGE_PREFETCH: 'frame=5', STAGE_TIMEOUT_MS: 'upload=1234', MAX_ATTEMPTS: '3', STAGE_MAX_ATTEMPTS: 'upload=9' });
    for (const s of STAGES) {
      assert.equal(c.stage(s).prefetch, s === 'frame' ? 5 : PIPELINE.spec[s].defaults.prefetch, s);
      assert.equal(c.stage(s).timeoutMs, s === 'upload' ? 1234 : PIPELINE.spec[s].defaults.timeoutMs, s);
      assert.equal(c.stage(s).maxAttempts, s === 'upload' ? 9 : 3, s);
    }
  });

  it('has bounded HTTP and authentication defaults', () => {
    const c = loadConfig({});
    assert.deepEqual(
      [c.HTTP_CONNECTION_TIMEOUT_MS, c.HTTP_KEEP_ALIVE_TIMEOUT_MS, c.HTTP_REQUEST_TIMEOUT_MS, c.HTTP_HEADERS_TIMEOUT_MS, c.HTTP_MAX_HEADER_BYTES, c.HTTP_MAX_REQUESTS_PER_SOCKET, c.HTTP_MAX_CONNECTIONS],
      [60_000, 10_000, 120_000, 10_000, 16_384, 1_000, 1_024],
    );
    assert.deepEqual([c.AUTH_FAILURE_LIMIT, c.AUTH_FAILURE_WINDOW_SECONDS, c.AUTH_CACHE_MAX_ENTRIES, c.AUTH_CACHE_TTL_MS, c.AUTH_NEGATIVE_CACHE_TTL_MS], [30, 60, 10_000, 30_000, 5_000]);
    assert.equal(c.FRAME_MAX_SIDE_PX, 4096);
  });

  it('treats an empty variable as unset', () => {
    assert.equal(loadConfig({ PORT: '', QUEUE_TYPE: '' }).PORT, 8080);
  });

  it('names the variable when a value is bad', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ PORT: 'eighty' }, /PORT/],
      [{ STAGE_PREFETCH: 'frame=2,resize=4' }, /STAGE_PREFETCH: bad entry "resize=4"/],
      [{ STAGE_PREFETCH: 'frame=0' }, /STAGE_PREFETCH/],
      [{ QUEUE_TYPE: 'stream' }, /QUEUE_TYPE/],
      [{ ADMIN_API_KEY: 'short' }, /ADMIN_API_KEY/],
      [{ RETRY_DELAYS_MS: '1000,-5' }, /RETRY_DELAYS_MS/],
      [{ RETRY_JITTER: '2' }, /RETRY_JITTER/],
      [{ S3_OBJECT_ACLS: 'maybe' }, /S3_OBJECT_ACLS/],
      [{ HTTP_HEADERS_TIMEOUT_MS: '30000', HTTP_REQUEST_TIMEOUT_MS: '20000' }, /HTTP_HEADERS_TIMEOUT_MS: 30000 must not exceed HTTP_REQUEST_TIMEOUT_MS/],
      [{ HTTP_MAX_HEADER_BYTES: '100' }, /HTTP_MAX_HEADER_BYTES/],
      [{ AUTH_FAILURE_LIMIT: '0' }, /AUTH_FAILURE_LIMIT/],
      [{ AUTH_CACHE_TTL_MS: '0' }, /AUTH_CACHE_TTL_MS/],
      [{ FRAME_MAX_SIDE_PX: '100000' }, /FRAME_MAX_SIDE_PX/],
    ];
    for (const [env, re] of cases) {
      assert.throws(() => loadConfig(env), (err: unknown) => err instanceof ConfigError && re.test(err.message), JSON.stringify(env));
    }
  });

  it('computes the longest retry wait with jitter', () => {
    assert.equal(longestRetryDelayMs({ RETRY_DELAYS_MS: [1_000, 600_000], RETRY_JITTER: 0.2 }), 720_000);
  });
  it('refuses development defaults when NODE_ENV=production', () => {
    assert.throws(() => loadConfig({ NODE_ENV: 'production' }), (err: unknown) => err instanceof ConfigError && /DATABASE_URL: must be set/.test(err.message) && /AMQP_URL: must be set/.test(err.message) && /S3_ENDPOINT: must be set/.test(err.message));
    const prod = { NODE_ENV: 'production', REDIS_URL: 'redis://redis:6379', S3_ENDPOINT: 'http://s3:9000' };
    assert.throws(() => loadConfig({ ...prod, DATABASE_URL: 'postgres://postgres:pw@db/photopipe', AMQP_URL: 'amqp://app:pw@mq' }), /Postgres superuser/);
    assert.throws(() => loadConfig({ ...prod, DATABASE_URL: 'postgres://app:pw@db/photopipe', AMQP_URL: 'amqp://guest:guest@mq' }), /guest account/);
    assert.throws(() => loadConfig({ ...prod, DATABASE_URL: 'postgres://app:pw@db/photopipe', AMQP_URL: 'amqp://app:pw@mq', S3_ACCESS_KEY_ID: 'S3RVER', S3_SECRET_ACCESS_KEY: 'S3RVER' }), /development S3/);
    assert.equal(loadConfig({ ...prod, DATABASE_URL: 'postgres://app:pw@db/photopipe', AMQP_URL: 'amqp://app:pw@mq' }).NODE_ENV, 'production');
  });

  it('refuses a failed-photo retention shorter than the retry schedule', () => {
    assert.throws(() => loadConfig({ FAILED_RETENTION_SECONDS: '60' }), /FAILED_RETENTION_SECONDS: 60 s is shorter than the longest retry delay/);
    assert.equal(loadConfig({ FAILED_RETENTION_SECONDS: '5', RETRY_DELAYS_MS: '100,200' }).FAILED_RETENTION_SECONDS, 5);
  });
});
