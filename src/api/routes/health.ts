import type { FastifyInstance } from 'fastify';
import { withTimeout } from '../../queues/broker.js';
import type { ApiDeps } from '../api-deps.js';

/** /healthz: the process is alive. /readyz: every dependency answers within 2 s. */
export function registerHealthRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get('/healthz', { config: { auth: 'none' } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { config: { auth: 'none' } }, async (_req, reply) => {
    const check = async (fn: () => Promise<unknown>): Promise<string> => {
      try {
        await withTimeout(Promise.resolve().then(fn), 2_000, 'timeout');
        return 'ok';
      } catch (err) {
        return `error: ${(err as Error).message}`;
      }
    };
    const [redis, postgres, s3, rabbitmq] = await Promise.all([
      check(() => deps.redis.ping()),
      check(() => deps.db.query('SELECT 1')),
      check(() => deps.storage.ping()),
      // Connected is not enough: uploads need the ingest queue to exist as declared.
      check(() => deps.broker.queueDepth(deps.broker.topology.workQueue('ingest'))),
    ]);
    const checks = { redis, rabbitmq, postgres, s3 };
    const ready = Object.values(checks).every((v) => v === 'ok');
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks });
  });
}
