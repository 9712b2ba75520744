import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../shared/logger.js';
import type { ProcessMetrics } from './metrics.js';

export interface ProcessProbe {
  /** Why the process is not ready, or null when it is (its own work: connections, consumers). */
  notReady(): Promise<string | null>;
}

/**
 * The small HTTP port every worker and the reconciler serve (METRICS_PORT): GET /metrics
 * (Prometheus), /healthz (alive), /readyz (ready to work: 200, or 503 with a terse reason).
 * Readiness is computed at most once a second. Nothing else is served; it carries no photo data.
 */
export async function startProcessHttp(opts: { port: number; host: string; metrics: ProcessMetrics; probe: ProcessProbe; log: Logger }): Promise<{ port: number; close: () => Promise<void> }> {
  let last: { at: number; reason: string | null } | null = null;
  const ready = async () => {
    if (!last || Date.now() - last.at > 1_000) last = { at: Date.now(), reason: await opts.probe.notReady().catch((err: Error) => err.message) };
    return last.reason;
  };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string) => res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'application/json', '{"error":{"code":"method_not_allowed","message":"GET only"}}');
    if (path === '/healthz') return send(200, 'application/json', '{"status":"ok"}');
    if (path === '/readyz') {
      void ready().then((reason) => (reason ? send(503, 'application/json', JSON.stringify({ status: 'not_ready', reason })) : send(200, 'application/json', '{"status":"ready"}')));
      return;
    }
    if (path === '/metrics') {
      void opts.metrics.render().then(
        (text) => send(200, opts.metrics.contentType, text),
        (err: Error) => send(500, 'text/plain', `metrics failed: ${err.message}`),
      );
      return;
    }
    send(404, 'application/json', '{"error":{"code":"not_found","message":"only /metrics, /healthz and /readyz"}}');
  });
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  opts.log.info({ port }, 'metrics and health port listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
