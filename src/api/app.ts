import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import multipart from '@fastify/multipart';
import { HttpError, RetryableError, ServiceUnavailableError } from '../shared/errors.js';
import { isDbUnavailable } from '../shared/db.js';
import type { ApiDeps } from './api-deps.js';
import { Authenticator } from './auth.js';
import { registerPhotoRoutes } from './routes/photos.js';
import { registerFrameRoutes } from './routes/frame.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerAdminDlqRoutes } from './routes/admin-dlq.js';

const FASTIFY_CODES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
};

/** Builds the HTTP API. No image work happens here: bytes are checked by magic number and handed on. */
export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: deps.config.UPLOAD_MAX_BYTES,
    disableRequestLogging: false,
    requestTimeout: 120_000,
    // On shutdown, idle keep-alive connections are closed at once instead of holding close() open.
    forceCloseConnections: 'idle',
    // Fastify's own closing answer is a 503 without Retry-After and in another body shape; the
    // hook below gives requests that arrive while the server drains our usual 503 instead.
    return503OnClosing: false,
    // X-Forwarded-* are only believed from proxies the operator names (they shape statusUrl).
    trustProxy: deps.config.TRUST_PROXY ?? false,
  });

  // Raw uploads: any image/* body, buffered up to the limit (Content-Length above it is refused at once).
  app.addContentTypeParser(/^image\/[\w.+-]+\s*(;.*)?$/i, { parseAs: 'buffer', bodyLimit: deps.config.UPLOAD_MAX_BYTES }, (_req, body, done) => done(null, body));
  await app.register(multipart, { limits: { fileSize: deps.config.UPLOAD_MAX_BYTES, files: 1 } });

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_req, reply) => {
    if (!closing) return;
    reply.header('connection', 'close');
    throw new ServiceUnavailableError('the server is shutting down, try again', 1);
  });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof HttpError) {
      return reply.code(err.status).headers(err.headers).send({ error: { code: err.code, message: err.message } });
    }
    if (isDbUnavailable(err)) {
      // Any route whose read finds Postgres away answers like an upload does: 503 + Retry-After, not 500.
      req.log.warn({ err: (err as Error).message }, 'postgres unavailable');
      const unavailable = new ServiceUnavailableError('database unavailable, try again shortly');
      return reply.code(unavailable.status).headers(unavailable.headers).send({ error: { code: unavailable.code, message: unavailable.message } });
    }
    if (err instanceof RetryableError) {
      // A dependency that is away for now (RabbitMQ for the DLQ tools, a timeout): try again later.
      req.log.warn({ err: err.message, code: err.code }, 'dependency unavailable');
      const unavailable = new ServiceUnavailableError(`temporarily unavailable (${err.code}), try again shortly`);
      return reply.code(unavailable.status).headers(unavailable.headers).send({ error: { code: unavailable.code, message: unavailable.message } });
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) {
      return reply.code(status).send({ error: { code: FASTIFY_CODES[status] ?? 'bad_request', message: (err as Error).message } });
    }
    req.log.error({ err }, 'unhandled error');
    return reply.code(500).send({ error: { code: 'internal', message: 'internal error' } });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url}` } }));

  const auth = new Authenticator(deps.apiKeys);
  registerHealthRoutes(app, deps);
  registerPhotoRoutes(app, deps, auth);
  registerFrameRoutes(app, deps, auth);
  registerAdminDlqRoutes(app, deps);
  return app;
}
