/**
 * The ceiling of the upload API (issue 20): a bare fastify server with one route that only
 * receives the body and SETs it in Redis with a TTL, over one ioredis connection, then answers 202
 * with a small JSON. No auth, no database, no broker: the physical limit of "receive over HTTP and
 * store" on this machine. Run by bench/goals as a child process:
 *
 *   node --import tsx bench/goals/ceiling-server.ts      (env: CEILING_KEY_PREFIX, REDIS_URL)
 *
 * Prints {"port":N} on stdout once listening; SIGTERM closes it.
 */
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';

const prefix = process.env.CEILING_KEY_PREFIX ?? `bench_ceiling_${randomBytes(4).toString('hex')}:`;
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const BODY_LIMIT = 50 * 1024 * 1024;

const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT });
app.addContentTypeParser('image/jpeg', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_req, body, done) => done(null, body));

let n = 0;
const tag = `${process.pid.toString(36)}-${Date.now().toString(36)}`;
app.post('/v1/photos', async (req, reply) => {
  const id = `${tag}-${n++}`;
  await redis.set(`${prefix}${id}`, req.body as Buffer, 'EX', 86_400);
  return reply.code(202).send({ id, status: 'stored' });
});

await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
const addr = app.server.address();
process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0, prefix })}\n`);

const stop = () => {
  void app.close().finally(() => {
    redis.disconnect();
    process.exit(0);
  });
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
