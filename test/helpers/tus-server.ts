/**
 * One API process for test/resumable-uploads.test.ts: fastify with the resumable upload routes on
 * real Redis, a fake tenant auth (`Bearer tenant-x` -> tenant-x) and a fake accept that records the
 * accepted bytes' SHA-256 in Redis. The test starts two of these, so an upload can continue on the
 * other process. Prints `listening <port>` once ready.
 *
 * Env: REDIS_URL, KEY_PREFIX, NAME, MAX_BYTES, LOCK_LEASE_MS, LOCK_DRAIN_MS.
 */
import { createHash, randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { HttpError, ServiceUnavailableError } from '../../src/shared/errors.js';
import { registerResumableUploads, type AcceptUpload, type AuthenticateTenant } from '../../src/api/resumable/resumable-routes.js';

const env = (name: string, fallback?: string): string => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is required`);
  return v;
};
const redisUrl = env('REDIS_URL', 'redis://127.0.0.1:6379');
const prefix = env('KEY_PREFIX');
const name = env('NAME');

const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
const subscriber = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
redis.on('error', () => {});
subscriber.on('error', () => {});

const app = Fastify({ logger: { level: 'warn', base: { server: name } } });

const authenticate: AuthenticateTenant = async (req) => {
  const m = /^Bearer (tenant-[a-z]+)$/.exec(req.headers.authorization ?? '');
  if (!m?.[1]) throw new HttpError(401, 'unauthorized', 'missing or unknown key');
  return m[1];
};

/** Stands in for acceptPhoto: records what it was given, so the test can compare hashes. */
const accept: AcceptUpload = async ({ tenantId, bytes, filename, contentType }) => {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (filename === 'fail-once.jpg' && (await redis.incr(`${prefix}accept-failures:${sha256}`)) === 1) {
    throw new ServiceUnavailableError('queue unavailable, try again shortly');
  }
  const id = randomUUID();
  await redis.set(`${prefix}accepted:${id}`, JSON.stringify({ tenantId, sha256, filename, contentType, bytes: bytes.length, by: name }), 'EX', 600);
  await redis.rpush(`${prefix}accepted-by-sha:${sha256}`, id);
  return { id, status: 'queued', statusUrl: `http://photos.test/v1/photos/${id}` };
};

// Which process served which tus request, for the test to check that resumes changed process.
app.addHook('onRequest', async (req, reply) => {
  reply.raw.setHeader('X-Served-By', name);
  if (req.url.startsWith('/v1/uploads') || req.url.startsWith('/short/uploads')) {
    await redis.rpush(`${prefix}requests`, `${name} ${req.method} ${req.url} ${String(req.headers['upload-offset'] ?? '-')}`);
  }
});

app.setErrorHandler((err, _req, reply) => {
  if (err instanceof HttpError) return reply.code(err.status).headers(err.headers).send({ error: { code: err.code, message: err.message } });
  app.log.error({ err }, 'unhandled');
  return reply.code(500).send({ error: { code: 'internal', message: 'internal error' } });
});

const common = {
  redis,
  subscriber,
  keyPrefix: prefix,
  maxBytes: Number(env('MAX_BYTES')),
  lockLeaseMs: Number(env('LOCK_LEASE_MS', '1500')),
  lockDrainMs: Number(env('LOCK_DRAIN_MS', '500')),
  authenticate,
  accept,
  log: app.log,
};
await registerResumableUploads(app, { ...common, ttlSeconds: 600 });
// The same module with a short expiry, for the abandoned-upload test.
await registerResumableUploads(app, { ...common, ttlSeconds: 2, path: '/short/uploads' });

await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);

let closing = false;
process.on('SIGTERM', () => {
  if (closing) return;
  closing = true;
  // Connections closed in reverse order of creation; the process then exits by itself.
  void app.close().finally(() => Promise.all([redis.quit().catch(() => {}), subscriber.quit().catch(() => {})]));
});
