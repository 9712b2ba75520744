import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { HttpError, RetryableError, ServiceUnavailableError } from '../shared/errors.js';
import { isDbUnavailable } from '../shared/db.js';
import type { ApiDeps } from './api-deps.js';
import { AdminGuard, Authenticator } from './auth.js';
import { redisAuthFailureLimiter, type AuthFailureLimiter } from './auth-failures.js';
import { installRouteAuth } from './route-auth.js';
import { registerPhotoRoutes } from './routes/photos.js';
import { registerFrameRoutes } from './routes/frame.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerAdminDlqRoutes } from './routes/admin-dlq.js';
import { registerPlaceRoutes } from './routes/places.js';
import { registerDashboardRoutes } from './routes/dashboard.js';
import { registerAdminPhotoRoutes } from './routes/admin-photos.js';
import { registerAdminStageRoutes } from './routes/admin-stages.js';
import { installUploadMetrics, registerMetricsRoute } from './routes/metrics.js';
import { registerWebhookRoutes } from './routes/webhooks.js';
import { registerResumableRoutes } from './routes/resumable.js';
import { registerBatchRoutes } from './routes/batches.js';

/**
 * Body limit of every route that does not name its own: only the upload (UPLOAD_MAX_BYTES), the
 * frame (FRAME_MAX_BYTES), the checksum check (128 KiB) and the DLQ replay (64 KiB) take more;
 * resumable uploads stream their PATCH bodies into Redis within the upload's declared length.
 * Anything else, the not-found route included, reads at most this much.
 */
export const DEFAULT_BODY_LIMIT_BYTES = 16 * 1024;

const STATUS_CODE_NAMES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  431: 'headers_too_large',
};

/** Fastify's own client errors, in our words (their texts are fine, but ours keep one voice and never vary). */
const FASTIFY_MESSAGES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'the body is larger than this endpoint accepts',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'this endpoint does not accept that Content-Type',
  FST_ERR_CTP_INVALID_JSON_BODY: 'the body is not valid JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'the JSON body is empty',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'Content-Length does not match the body',
  FST_ERR_CTP_EMPTY_TYPE: 'the Content-Type header is empty',
  FST_ERR_CTP_INVALID_TYPE: 'the Content-Type header is not valid',
  FST_ERR_BAD_URL: 'the URL is not valid',
  FST_ERR_MAX_PARAM_LENGTH: 'a path segment is too long',
};

function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

/**
 * A 4xx from fastify or a plugin, as {status, code, message}: a fixed text per fastify error code
 * or per status, never the error's own message (a library's text could carry internals).
 */
function clientError(err: FastifyError): { status: number; code: string; message: string } | null {
  const status = err.statusCode;
  if (!status || status < 400 || status >= 500) return null;
  const code = STATUS_CODE_NAMES[status] ?? 'bad_request';
  const message = FASTIFY_MESSAGES[err.code] ?? (STATUS_CODES[status] ?? 'bad request').toLowerCase();
  return { status, code, message };
}

/**
 * Errors Node's HTTP parser reports before there is a request (malformed HTTP, headers over
 * HTTP_MAX_HEADER_BYTES, the headers or request timeout): answered in our JSON shape, and the
 * connection closed.
 */
function onClientError(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'request_timeout', 'the request did not arrive in time']
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'headers_too_large', 'the request headers are larger than the limit']
        : [400, 'bad_request', 'malformed HTTP request'];
  this.log.debug({ err: err.message, code: err.code }, 'client error');
  if (socket.writable) {
    const body = JSON.stringify(errorBody(code, message));
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/** A client's correlation id if it is a short token (letters, digits, . _ - :), else a new UUID. */
export function correlationIdOf(header: string | string[] | undefined): string {
  const v = Array.isArray(header) ? header[0] : header;
  return v && /^[A-Za-z0-9._:-]{1,100}$/.test(v) ? v : randomUUID();
}

export interface BuildAppOptions {
  /** Failed-authentication counting; Redis-backed (shared by every API process) unless given. */
  authFailures?: AuthFailureLimiter;
}

/** Builds the HTTP API. No image work happens here beyond checking a tenant's frame: bytes are checked by magic number and handed on. */
export async function buildApp(deps: ApiDeps, opts: BuildAppOptions = {}): Promise<FastifyInstance> {
  const { config } = deps;
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: DEFAULT_BODY_LIMIT_BYTES,
    // The request id is the correlation id: the client's X-Correlation-Id when it is a sane token,
    // else a new one. It is echoed in the answer and travels with an accepted photo to every stage.
    genReqId: (req) => correlationIdOf(req.headers['x-correlation-id']),
    requestIdLogLabel: 'cid',
    // Requests are logged once, when answered, below: at info when they failed or were slow, at
    // debug otherwise (two lines per upload at info cost the hot path more than they tell).
    disableRequestLogging: true,
    connectionTimeout: config.HTTP_CONNECTION_TIMEOUT_MS,
    keepAliveTimeout: config.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
    maxRequestsPerSocket: config.HTTP_MAX_REQUESTS_PER_SOCKET,
    http: {
      maxHeaderSize: config.HTTP_MAX_HEADER_BYTES,
      headersTimeout: config.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
      // Node enforces the two timeouts above only when it checks its connections (every 30 s by
      // default), so a slow client could hold a connection that long past its limit.
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(config.HTTP_HEADERS_TIMEOUT_MS / 2))),
    },
    clientErrorHandler: onClientError,
    // Bad URLs and over-long path parameters answer in our JSON shape too.
    frameworkErrors: (err, _req, reply) => {
      const e = clientError(err) ?? { status: 400, code: 'bad_request', message: 'bad request' };
      void (reply as FastifyReply).code(e.status).send(errorBody(e.code, e.message));
    },
    // On shutdown, idle keep-alive connections are closed at once instead of holding close() open.
    forceCloseConnections: 'idle',
    // Fastify's own closing answer is a 503 without Retry-After and in another body shape; the
    // hook below gives requests that arrive while the server drains our usual 503 instead.
    return503OnClosing: false,
    // X-Forwarded-* are only believed from proxies the operator names (they decide the client
    // address that failed authentications are counted under).
    trustProxy: config.TRUST_PROXY ?? false,
  });
  if (config.HTTP_MAX_CONNECTIONS > 0) app.server.maxConnections = config.HTTP_MAX_CONNECTIONS;

  // Raw uploads: any image/* body, buffered up to the route's limit (a Content-Length above it is
  // refused at once). The parser has no limit of its own, which would apply to every route.
  app.addContentTypeParser(/^image\/[\w.+-]+\s*(;.*)?$/i, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  await app.register(multipart, { limits: { fileSize: config.UPLOAD_MAX_BYTES, files: 1 } });

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_req, reply) => {
    if (!closing) return;
    reply.header('connection', 'close');
    throw new ServiceUnavailableError('the server is shutting down, try again', 1);
  });

  const failures = opts.authFailures ?? redisAuthFailureLimiter(config, deps.redis, deps.log);
  const auth = new Authenticator({
    keys: deps.apiKeys,
    failures,
    maxEntries: config.AUTH_CACHE_MAX_ENTRIES,
    ttlMs: config.AUTH_CACHE_TTL_MS,
    negativeTtlMs: config.AUTH_NEGATIVE_CACHE_TTL_MS,
  });
  installRouteAuth(app, auth, new AdminGuard(config.ADMIN_API_KEY, failures));

  // An answer given before the request's body has arrived (a refused key, a 413, a 404) closes
  // the connection: otherwise Node would read and discard the rest of the body, however large,
  // to keep the connection alive for a client that was just refused.
  app.addHook('onSend', async (req, reply) => {
    if (!req.raw.complete) reply.header('connection', 'close');
    reply.header('x-correlation-id', req.id);
  });
  app.addHook('onResponse', async (req, reply) => {
    const ms = reply.elapsedTime;
    const line = { method: req.method, url: req.routeOptions.url ?? req.url.split('?')[0], status: reply.statusCode, ms: Math.round(ms) };
    if (reply.statusCode >= 400 || ms > 1_000) req.log.info(line, 'request');
    else req.log.debug(line, 'request');
  });

  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof HttpError) {
      return reply.code(err.status).headers(err.headers).send(errorBody(err.code, err.message));
    }
    if (isDbUnavailable(err)) {
      // Any route whose read finds Postgres away answers like an upload does: 503 + Retry-After, not 500.
      req.log.warn({ err: err.message }, 'postgres unavailable');
      const unavailable = new ServiceUnavailableError('database unavailable, try again shortly');
      return reply.code(unavailable.status).headers(unavailable.headers).send(errorBody(unavailable.code, unavailable.message));
    }
    if (err instanceof RetryableError) {
      // A dependency that is away for now (RabbitMQ for the DLQ tools, a timeout): try again later.
      req.log.warn({ err: err.message, code: err.code }, 'dependency unavailable');
      const unavailable = new ServiceUnavailableError(`temporarily unavailable (${err.code}), try again shortly`);
      return reply.code(unavailable.status).headers(unavailable.headers).send(errorBody(unavailable.code, unavailable.message));
    }
    const client = clientError(err);
    if (client) {
      req.log.info({ err: err.message, code: err.code }, 'request refused');
      return reply.code(client.status).send(errorBody(client.code, client.message));
    }
    // Whatever it was, its text stays in the log: a 500 body never carries internals.
    req.log.error({ err }, 'unhandled error');
    return reply.code(500).send(errorBody('internal', 'internal error'));
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send(errorBody('not_found', `no route ${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`)));

  installUploadMetrics(app, deps);
  registerHealthRoutes(app, deps);
  registerPhotoRoutes(app, deps);
  registerFrameRoutes(app, deps);
  registerPlaceRoutes(app, deps);
  registerWebhookRoutes(app, deps);
  registerBatchRoutes(app, deps);
  registerAdminDlqRoutes(app, deps);
  registerAdminPhotoRoutes(app, deps);
  registerAdminStageRoutes(app, deps);
  registerDashboardRoutes(app, deps);
  registerMetricsRoute(app, deps);
  const { subscriber } = deps;
  if (subscriber) await registerResumableRoutes(app, { ...deps, subscriber });
  return app;
}
