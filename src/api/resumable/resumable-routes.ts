import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes, randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { ERRORS, Server, type Upload } from '@tus/server';
import { HttpError } from '../../shared/errors.js';
import { CONTENT_TYPES, SNIFF_BYTES, sniffImageFormat } from '../../imaging/sniff.js';
import { sanitizeFilename } from '../filename.js';
import { RedisDataStore, TusResponseError, type UploadRecord } from './redis-data-store.js';
import { RedisLocker } from './redis-locker.js';

/** What a completed upload hands to the pipeline: the same input as a plain `POST /v1/photos`. */
export interface AcceptUploadInput {
  tenantId: string;
  bytes: Buffer;
  /** Sanitized `filename` from Upload-Metadata, or null. */
  filename: string | null;
  /** From the sniffed bytes, never from the client's `filetype`. */
  contentType: string;
}

/** The accept function's 202 answer: bytes stored, row written, broker confirmed. */
export interface AcceptedUpload {
  id: string;
  status: string;
  statusUrl: string;
}

export type AcceptUpload = (input: AcceptUploadInput) => Promise<AcceptedUpload>;

/** Resolves the caller's tenant or throws (an HttpError 401/503, answered by the app's error handler). */
export type AuthenticateTenant = (req: FastifyRequest) => Promise<string>;

export interface ResumableUploadOptions {
  /** Commands: upload bytes and metadata, locks, publish. */
  redis: Redis;
  /** A dedicated connection for the locker's SUBSCRIBE. */
  subscriber: Redis;
  keyPrefix: string;
  /** The plain upload's limit (UPLOAD_MAX_BYTES): Upload-Length above it is refused with 413 at creation. */
  maxBytes: number;
  /** An unfinished upload expires this long after its last PATCH. */
  ttlSeconds: number;
  /** A dead process's lock blocks a resume for at most this long. */
  lockLeaseMs: number;
  authenticate: AuthenticateTenant;
  accept: AcceptUpload;
  log: FastifyBaseLogger;
  /** Default `/v1/uploads`. */
  path?: string;
  /** When set, Location is absolute on this base (like PUBLIC_BASE_URL); otherwise relative. Host headers are never trusted. */
  publicBaseUrl?: string;
  /** How long an accepted upload's record (photo id) stays for a client that lost the final answer. Default min(ttl, 1 h). */
  finishedTtlSeconds?: number;
  /** Default 256 KiB, at most 1 MiB. */
  appendPieceBytes?: number;
  /** How long a PATCH asked to give up its lock keeps writing before it stops. Default 3000 (tus' default). */
  lockDrainMs?: number;
  /** The accept call's claim lease (renewed while it runs). Default 30 s. */
  acceptLeaseMs?: number;
  /** How long a request waits for another request's accept of the same upload. Default 20 s. */
  acceptWaitMs?: number;
}

export interface ResumableUploads {
  store: RedisDataStore;
  locker: RedisLocker;
  tus: Server;
}

/** Response headers that tell a client which photo its finished upload became. */
export const PHOTO_ID_HEADER = 'X-Photo-Id';
export const PHOTO_STATUS_URL_HEADER = 'X-Photo-Status-Url';

const UPLOAD_ID = /^[0-9a-f]{32}$/;
const METHODS = ['POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS'] as const;

interface RequestScope {
  tenantId: string | null;
  res: ServerResponse;
  /** What the store refused while the body was flowing (see RedisDataStoreOptions.onWriteError). */
  writeError?: unknown;
}

/**
 * tus 1.0 resumable uploads at `/v1/uploads`, on Redis so any API process can continue an upload
 * another one started. The tenant is authenticated before any body byte is read; an upload is
 * visible only to its tenant (another gets 404); the size limit applies at creation, the image
 * sniff as soon as the first 64 bytes are stored; a completed upload is handed to `accept` exactly
 * once and its bytes freed. The final PATCH (or a later HEAD) answers X-Photo-Id and
 * X-Photo-Status-Url.
 */
export async function registerResumableUploads(app: FastifyInstance, opts: ResumableUploadOptions): Promise<ResumableUploads> {
  const path = (opts.path ?? '/v1/uploads').replace(/\/$/, '');
  const log = opts.log.child({ component: 'resumable-uploads' });
  const acceptLeaseMs = opts.acceptLeaseMs ?? 30_000;
  const acceptWaitMs = opts.acceptWaitMs ?? 20_000;
  const scopes = new AsyncLocalStorage<RequestScope>();
  const tenants = new WeakMap<FastifyRequest, string>();

  const store = new RedisDataStore({
    redis: opts.redis,
    keyPrefix: opts.keyPrefix,
    maxBytes: opts.maxBytes,
    ttlSeconds: opts.ttlSeconds,
    finishedTtlSeconds: opts.finishedTtlSeconds,
    appendPieceBytes: opts.appendPieceBytes,
    headCheck: {
      bytes: SNIFF_BYTES,
      check: (head) => {
        const format = sniffImageFormat(head);
        if (!format) throw notAnImage();
        return format;
      },
    },
    onWriteError: (_id, err) => {
      const s = scopes.getStore();
      if (s) s.writeError = err;
    },
  });
  const locker = new RedisLocker({ redis: opts.redis, subscriber: opts.subscriber, keyPrefix: opts.keyPrefix, lockLeaseMs: opts.lockLeaseMs });

  const scope = (): RequestScope & { tenantId: string } => {
    const s = scopes.getStore();
    // Every tus method but OPTIONS went through authentication in onRequest.
    if (!s?.tenantId) throw new Error('resumable upload hook ran outside an authenticated request');
    return s as RequestScope & { tenantId: string };
  };

  /** Hands a complete upload to accept once, however many requests (final PATCH, HEADs) ask. */
  const finish = async (record: UploadRecord): Promise<AcceptedUpload> => {
    if (record.result !== null) return parseResult(record.result);
    const token = randomUUID();
    const deadline = Date.now() + acceptWaitMs;
    for (;;) {
      const claim = await store.claimFinish(record.id, token, acceptLeaseMs);
      if (claim.kind === 'done') return parseResult(claim.result);
      if (claim.kind === 'missing') throw ERRORS.FILE_NOT_FOUND;
      if (claim.kind === 'incomplete') throw new TusResponseError(409, 'the upload is not complete\n');
      if (claim.kind === 'claimed') return handOn(record, token);
      if (Date.now() >= deadline) throw new TusResponseError(503, 'the upload is still being handed on; ask again (HEAD) shortly\n');
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  const handOn = async (record: UploadRecord, token: string): Promise<AcceptedUpload> => {
    const renew = setInterval(() => {
      store.renewFinish(record.id, token, acceptLeaseMs).catch(() => undefined);
    }, Math.floor(acceptLeaseMs / 3));
    renew.unref();
    const started = Date.now();
    try {
      const bytes = await store.readAll(record.id);
      // The same check as a plain upload, on the same bytes it would see.
      const format = sniffImageFormat(bytes.subarray(0, SNIFF_BYTES));
      if (!format) {
        await store.remove(record.id);
        throw notAnImage();
      }
      const photo = await opts.accept({
        tenantId: record.owner,
        bytes,
        filename: sanitizeFilename(record.metadata.filename),
        contentType: CONTENT_TYPES[format],
      });
      // Keeps only the small record (photo id) so a client that lost this answer learns it by HEAD.
      if (!(await store.completeFinish(record.id, token, JSON.stringify(photo)))) {
        log.warn({ uploadId: record.id, photoId: photo.id }, 'resumable upload: hand-off claim lapsed during accept; another request may accept it again');
      }
      log.info({ uploadId: record.id, photoId: photo.id, tenantId: record.owner, bytes: bytes.length, format, acceptMs: Date.now() - started }, 'resumable upload accepted');
      return photo;
    } catch (err) {
      await store.releaseFinish(record.id, token).catch(() => undefined);
      throw toTusError(err, log, record.id);
    } finally {
      clearInterval(renew);
    }
  };

  const tus = new Server({
    path,
    datastore: store,
    locker,
    maxSize: opts.maxBytes,
    relativeLocation: opts.publicBaseUrl === undefined,
    generateUrl: opts.publicBaseUrl === undefined ? undefined : (_req, { path: p, id }) => `${opts.publicBaseUrl?.replace(/\/$/, '')}${p}/${id}`,
    respectForwardedHeaders: false,
    namingFunction: () => randomBytes(16).toString('hex'),
    lockDrainTimeout: opts.lockDrainMs ?? 3000,
    // A complete upload is being (or was) handed on: deleting it then would race the accept.
    disableTerminationForFinishedUploads: true,
    exposedHeaders: [PHOTO_ID_HEADER, PHOTO_STATUS_URL_HEADER],

    onIncomingRequest: async (req, id) => {
      const { tenantId, res } = scope();
      if (req.method === 'POST') return;
      if (!UPLOAD_ID.test(id)) throw ERRORS.FILE_NOT_FOUND;
      const record = await store.inspect(id);
      // Another tenant's upload answers exactly like a missing one, before its lock is touched.
      if (!record || record.owner !== tenantId) throw ERRORS.FILE_NOT_FOUND;
      if (req.method === 'HEAD' && record.offset === record.size) {
        // Complete: tell the client its photo, handing the upload on first if the final PATCH
        // could not (accept failed, or that process died).
        const photo = await finish(record);
        for (const [name, value] of Object.entries(photoHeaders(photo))) res.setHeader(name, value);
      }
    },

    onUploadCreate: async (_req, upload: Upload) => {
      const { tenantId } = scope();
      if (!upload.size) throw new TusResponseError(400, 'the upload is empty (Upload-Length: 0)\n');
      store.assignOwner(upload, tenantId);
      return {};
    },

    onUploadFinish: async (_req, upload: Upload) => {
      const record = await store.inspect(upload.id);
      if (!record) throw ERRORS.FILE_NOT_FOUND;
      return { headers: photoHeaders(await finish(record)) };
    },

    onResponseError: (_req, err) => {
      // The pipeline masked the store's own refusal as "aborted": answer the refusal instead.
      const refused = scopes.getStore()?.writeError;
      if (err === ERRORS.ABORTED && isTusError(refused)) return { status_code: refused.status_code, body: refused.body };
      const status = 'status_code' in err ? err.status_code : 500;
      if (status >= 500) log.warn({ err: err instanceof Error ? err.message : err.body, status }, 'resumable upload request failed');
      return undefined;
    },
  });

  const onRequest = async (req: FastifyRequest) => {
    // A CORS preflight carries no credentials; the OPTIONS answer reveals only protocol limits.
    if (req.method === 'OPTIONS') return;
    tenants.set(req, await opts.authenticate(req));
  };

  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    reply.hijack();
    const res = reply.raw;
    try {
      await scopes.run({ tenantId: tenants.get(req) ?? null, res }, () => tus.handle(req.raw, res));
    } catch (err) {
      req.log.error({ err }, 'resumable upload handler failed');
      if (!res.headersSent) {
        res.statusCode = 500;
        res.end();
      } else {
        res.destroy();
      }
    }
  };

  await app.register(async (scoped) => {
    // @tus/server reads PATCH (and creation-with-upload POST) bodies from the raw request as a
    // stream; fastify must leave them unread, so no body limit or buffering applies here.
    scoped.removeAllContentTypeParsers();
    scoped.addContentTypeParser('*', (_req, _payload, done) => done(null));
    for (const url of [path, `${path}/*`]) {
      scoped.route({ method: [...METHODS], url, exposeHeadRoute: false, onRequest, handler });
    }
  });
  app.addHook('onClose', async () => {
    await locker.close();
  });

  return { store, locker, tus };
}

function isTusError(err: unknown): err is { status_code: number; body: string } {
  return typeof err === 'object' && err !== null && typeof (err as { status_code?: unknown }).status_code === 'number' && typeof (err as { body?: unknown }).body === 'string';
}

function notAnImage(): TusResponseError {
  return new TusResponseError(415, 'the bytes are not a supported image (JPEG, PNG, WebP, TIFF, GIF, AVIF, HEIC/HEIF)\n');
}

function photoHeaders(photo: AcceptedUpload): Record<string, string> {
  return { [PHOTO_ID_HEADER]: photo.id, [PHOTO_STATUS_URL_HEADER]: photo.statusUrl };
}

function parseResult(text: string): AcceptedUpload {
  const value = JSON.parse(text) as Partial<AcceptedUpload>;
  return { id: String(value.id), status: String(value.status), statusUrl: String(value.statusUrl) };
}

/** The accept function speaks HttpError (503 when a dependency is away); tus speaks status_code/body. */
function toTusError(err: unknown, log: FastifyBaseLogger, uploadId: string): unknown {
  if (err instanceof TusResponseError) return err;
  if (err instanceof HttpError) return new TusResponseError(err.status, `${err.message}\n`);
  if (isTusError(err)) return err;
  log.error({ err, uploadId }, 'resumable upload: accept failed');
  return new TusResponseError(500, 'internal error\n');
}
