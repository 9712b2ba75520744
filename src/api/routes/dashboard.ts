import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { HttpError } from '../../shared/errors.js';
import { intParam, queryError } from '../query.js';
import type { ApiDeps } from '../api-deps.js';

const PUBLIC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'public', 'dashboard');
const require = createRequire(import.meta.url);

/** The page's files: our own and uPlot's, served from the package (no CDN: there may be no internet). */
const ASSETS: Record<string, { path: () => string; type: string }> = {
  'dashboard.js': { path: () => join(PUBLIC, 'dashboard.js'), type: 'text/javascript; charset=utf-8' },
  'dashboard.css': { path: () => join(PUBLIC, 'dashboard.css'), type: 'text/css; charset=utf-8' },
  'uplot.js': { path: () => join(dirname(require.resolve('uplot')), 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  'uplot.css': { path: () => join(dirname(require.resolve('uplot')), 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

const historyQuery = z.object({ seconds: intParam(1, 3_600, 300) });

/**
 * The live dashboard: GET /dashboard (a page that holds no secret: it asks for the admin key and
 * sends it with each request), its assets, and behind the admin key a once-a-second stream of
 * fleet-wide numbers (server-sent events) plus the recent history for the chart.
 */
export function registerDashboardRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get('/dashboard', { config: { auth: 'none' } }, async (_req, reply) => {
    const html = await readFile(join(PUBLIC, 'index.html'), 'utf8');
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(html);
  });

  app.get<{ Params: { file: string } }>('/dashboard/assets/:file', { config: { auth: 'none' } }, async (req, reply) => {
    const asset = ASSETS[req.params.file];
    if (!asset) throw new HttpError(404, 'not_found', 'no such asset');
    return reply.type(asset.type).header('cache-control', 'public, max-age=300').send(await readFile(asset.path()));
  });

  app.get('/v1/admin/dashboard/history', { config: { auth: 'admin' } }, async (req) => {
    const q = historyQuery.safeParse(req.query);
    if (!q.success) throw queryError('invalid_query', q.error);
    return { stages: (await deps.dashboard.snapshot()).stages, seconds: await deps.dashboard.history(q.data.seconds) };
  });

  // Server-sent events: one snapshot a second until the client goes away.
  app.get('/v1/admin/dashboard/stream', { config: { auth: 'admin' } }, (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    let closed = false;
    const send = async () => {
      if (closed) return;
      try {
        const snap = await deps.dashboard.snapshot();
        // A client that does not read fast enough skips seconds rather than growing our buffer.
        if (!closed && !res.writableNeedDrain) res.write(`event: snapshot\ndata: ${JSON.stringify(snap)}\n\n`);
      } catch (err) {
        req.log.debug({ err: (err as Error).message }, 'dashboard snapshot failed');
        if (!closed) res.write(`event: error\ndata: ${JSON.stringify({ message: 'snapshot unavailable' })}\n\n`);
      }
    };
    const timer = setInterval(() => void send(), 1_000);
    void send();
    const stop = () => {
      closed = true;
      clearInterval(timer);
    };
    req.raw.on('close', stop);
    res.on('close', stop);
  });
}
