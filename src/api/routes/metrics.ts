import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from '../api-deps.js';

/**
 * GET /metrics: the API's Prometheus metrics (uploads, and the fleet gauges it reads: Redis blob
 * bytes, queue depths and consumers, DLQ sizes), for a scraper on the internal network. No photo
 * or tenant ids in any label.
 */
export function registerMetricsRoute(app: FastifyInstance, deps: ApiDeps): void {
  app.get('/metrics', { config: { auth: 'none' } }, async (_req, reply) => {
    const text = await deps.metrics.metrics.render();
    return reply.type(deps.metrics.metrics.contentType).header('cache-control', 'no-store').send(text);
  });
}

/** Counts upload outcomes, whatever answered them (the route, auth, limits, shedding). Installed before the routes. */
export function installUploadMetrics(app: FastifyInstance, deps: ApiDeps): void {
  app.addHook('onResponse', async (req, reply) => {
    if (req.method !== 'POST' || req.routeOptions.url !== '/v1/photos') return;
    const length = Number(req.headers['content-length']);
    deps.metrics.upload(reply.statusCode, Number.isFinite(length) ? length : null);
  });
}
