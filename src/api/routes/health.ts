import type { FastifyInstance } from 'fastify';
import { withTimeout } from '../../queues/broker.js';
import type { ApiDeps } from '../api-deps.js';
import { SharedResult } from '../../shared/shared-result.js';

type CheckName = 'redis' | 'rabbitmq' | 'postgres' | 's3';

export interface Readiness {
  ready: boolean;
  checks: Record<CheckName, 'ok' | 'fail'>;
  /** Why each failed check failed: for the log, never for the anonymous caller. */
  errors: Partial<Record<CheckName, string>>;
}

/** How long one round of readiness checks is reused (concurrent probes share the round in progress). */
export const READINESS_CACHE_MS = 1_000;
const CHECK_TIMEOUT_MS = 2_000;

/** One round of dependency checks, each within 2 s. */
export function readinessChecks(deps: Pick<ApiDeps, 'redis' | 'db' | 'storage' | 'broker'>): () => Promise<Readiness> {
  const checks: Record<CheckName, () => Promise<unknown>> = {
    redis: () => deps.redis.ping(),
    rabbitmq: () => deps.broker.queueDepth(deps.broker.topology.workQueue('ingest')), // connected is not enough: uploads need the ingest queue as declared
    postgres: () => deps.db.query('SELECT 1'),
    s3: () => deps.storage.ping(),
  };
  return async () => {
    const names = Object.keys(checks) as CheckName[];
    const results = await Promise.all(
      names.map(async (name) => {
        try {
          await withTimeout(Promise.resolve().then(checks[name]), CHECK_TIMEOUT_MS, 'timeout');
          return null;
        } catch (err) {
          return (err as Error).message || String(err);
        }
      }),
    );
    const out: Readiness = { ready: true, checks: { redis: 'ok', rabbitmq: 'ok', postgres: 'ok', s3: 'ok' }, errors: {} };
    names.forEach((name, i) => {
      const error = results[i];
      if (error === null || error === undefined) return;
      out.ready = false;
      out.checks[name] = 'fail';
      out.errors[name] = error;
    });
    return out;
  };
}

/**
 * /healthz: the process is alive. /readyz: every dependency answers (200) or not (503), as
 * `{status, checks: {name: 'ok'|'fail'}}`; it is anonymous, so why a check failed goes to the log
 * only (dependency errors name hosts and addresses). Checks run at most once a second.
 */
export function registerHealthRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const check = readinessChecks(deps);
  const readiness = new SharedResult(async () => {
    const r = await check();
    if (!r.ready) deps.log.warn({ errors: r.errors }, 'not ready');
    return r;
  }, READINESS_CACHE_MS);

  app.get('/healthz', { config: { auth: 'none' } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { config: { auth: 'none' } }, async (_req, reply) => {
    const r = await readiness.get();
    return reply.code(r.ready ? 200 : 503).send({ status: r.ready ? 'ready' : 'not_ready', checks: r.checks });
  });
}
