/**
 * The upload path against its physical limit, side by side in one run (issue 20's first two rows):
 *   api      photopipe's POST /v1/photos (auth, limits, sniff, Redis SET, Postgres INSERT,
 *            confirmed publish), with the whole pipeline running
 *   ceiling  a bare fastify route that only SETs the body in Redis with a TTL, same body, same load
 * Both with autocannon at the same concurrency and duration, the same 157 KB real JPEG.
 *
 *   npx tsx bench/upload-path.ts [--seconds 15] [--connections 16]
 */
import { randomUUID } from 'node:crypto';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import type { Stack } from '../test/helpers/stack.js';

export interface UploadPathRun {
  uploadsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

export interface UploadPathResult {
  bodyBytes: number;
  connections: number;
  seconds: number;
  api: UploadPathRun;
  ceiling: UploadPathRun;
  ratio: number;
}

async function load(url: string, headers: Record<string, string>, body: Buffer, o: { connections: number; seconds: number }): Promise<UploadPathRun> {
  const r = await autocannon({ url, method: 'POST', headers, body, connections: o.connections, pipelining: 1, duration: o.seconds, timeout: 30 });
  const ok = r['2xx'];
  return { uploadsPerSec: ok / r.duration, p50Ms: r.latency.p50, p99Ms: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
}

/** The ceiling: receive over HTTP, SET in Redis with a TTL, answer 202. Nothing else. */
async function bareServer(redisUrl: string, prefix: string): Promise<{ url: string; close: () => Promise<void> }> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const app = Fastify({ bodyLimit: 30 * 1024 * 1024 });
  app.addContentTypeParser(/^image\//, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.post('/v1/photos', async (req, reply) => {
    const id = randomUUID();
    await redis.set(`${prefix}ceiling:${id}`, req.body as Buffer, 'EX', 120);
    return reply.code(202).send({ id });
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}/v1/photos`,
    close: async () => {
      await app.close();
      const keys = await redis.keys(`${prefix}ceiling:*`);
      for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
      redis.disconnect();
    },
  };
}

/**
 * Runs both, ceiling first, then the API (whose stack's workers are running). Accepted uploads
 * are real photos: the pipeline processes them (the same bytes: duplicates after the first).
 */
export async function runUploadPath(stack: Stack, body: Buffer, o: { connections: number; seconds: number; log: (s: string) => void }): Promise<UploadPathResult> {
  const bare = await bareServer(stack.config.REDIS_URL, stack.config.REDIS_KEY_PREFIX);
  let ceiling: UploadPathRun;
  try {
    ceiling = await load(bare.url, { 'content-type': 'image/jpeg' }, body, o);
  } finally {
    await bare.close();
  }
  o.log(`  ceiling: ${ceiling.uploadsPerSec.toFixed(0)} uploads/s, p50 ${ceiling.p50Ms} ms, p99 ${ceiling.p99Ms} ms`);
  const api = await load(`${stack.apiUrl}/v1/photos`, { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'image/jpeg' }, body, o);
  o.log(`  api:     ${api.uploadsPerSec.toFixed(0)} uploads/s, p50 ${api.p50Ms} ms, p99 ${api.p99Ms} ms (non-2xx ${api.non2xx}, errors ${api.errors})`);
  return { bodyBytes: body.length, connections: o.connections, seconds: o.seconds, api, ceiling, ratio: api.uploadsPerSec / ceiling.uploadsPerSec };
}
