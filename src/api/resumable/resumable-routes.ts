import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes, randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { ERRORS, Server, type Upload } from '@tus/server';
import { Metadata } from '@tus/utils';
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
  /** The upload's metadata as stored at creation (Upload-Metadata, plus what beforeCreate added). */
  metadata: Record<string, string | null>;
}

/**
 * The accept function's answer: a new photo (202 semantics: bytes stored, row written, broker
 * confirmed), or, with `duplicate`, the photo that already holds these bytes (nothing queued).
 */
export interface AcceptedUpload {
  id: string;
  status: string;
  statusUrl: string;
  duplicate?: boolean;
}

/**
 * Runs on a creation request (POST) before tus sees it, once the tenant is known. It may refuse the
 * upload (throw an HttpError, answered as JSON), add to its metadata (values checked and normalised
 * from request headers), or answer at once with the photo that already holds the declared content.
 */
export type BeforeCreate = (
  req: FastifyRequest,
  tenantId: string,
  metadata: Record<string, string | null>,
) => Promise<{ metadata?: Record<string, string>; existing?: AcceptedUpload }>;

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
  /**
   * Runs in onRequest of every tus request but OPTIONS, after the app's route auth (the routes
   * declare `config.auth: 'tenant'`), before any body byte is read: returns the tenant, or throws
   * (admission: load shedding, the tenant's limits).
   */
  authenticate: AuthenticateTenant;
  accept: AcceptUpload;
  beforeCreate?: BeforeCreate;
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
/** `true` when that photo already held the content (the upload became no new photo). */
export const PHOTO_DUPLICATE_HEADER = 'X-Photo-Duplicate';

const UPLOAD_ID = /^[0-9a-f]{32}$/;
const METHODS = ['POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS'] as const;

interface RequestScope {
  tenantId: string | null;
  res: ServerResponse;
  /** What the store refused while the body was flowing (see RedisDataStoreOptions.onWriteError). */
  writeError?: unknown;
  /** Metadata beforeCreate added to a creation request. */
  metadata?: Record<string, string>;
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
        metadata: record.metadata,
      });
      // Keeps only the small record (photo id) so a client that lost this answer learns it by HEAD.
      if (!(await store.completeFinish(record.id, token, JSON.stringify(photo)))) {
        log.warn({ uploadId: record.id, photoId: photo.id }, 'resumable upload: hand-off claim lapsed during accept; another request may accept it again');
      }
      log.info({ uploadId: record.id, photoId: photo.id, tenantId: record.owner, bytes: bytes.length, format, acceptMs: Date.now() - started }, 'resumable upload accepted');
      return photo;
    } catch (err) {
      // A refusal of the bytes themselves (a checksum that does not match, data the database
      // refuses) is final: nothing of the upload is kept. Anything else (503) keeps them for a retry.
      if (err instanceof HttpError && err.status >= 400 && err.status < 500) await store.remove(record.id).catch(() => undefined);
      else await store.releaseFinish(record.id, token).catch(() => undefined);
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
    exposedHeaders: [PHOTO_ID_HEADER, PHOTO_STATUS_URL_HEADER, PHOTO_DUPLICATE_HEADER],

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
      const { tenantId, metadata } = scope();
      if (!upload.size) throw new TusResponseError(400, 'the upload is empty (Upload-Length: 0)\n');
      store.assignOwner(upload, tenantId);
      return metadata ? { metadata: { ...(upload.metadata ?? {}), ...metadata } } : {};
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
    const tenantId = tenants.get(req) ?? null;
    let added: Record<string, string> | undefined;
    if (req.method === 'POST' && tenantId && opts.beforeCreate) {
      const metadata = parseUploadMetadata(req.headers['upload-metadata']);
      // Malformed metadata: tus answers it (400) below.
      if (metadata) {
        const before = await opts.beforeCreate(req, tenantId, metadata);
        if (before.existing) {
          // Known content: no upload is created and no byte needs to be sent.
          return reply
            .code(200)
            .header('tus-resumable', '1.0.0')
            .headers(photoHeaders(before.existing))
            .send({ id: before.existing.id, status: before.existing.status, statusUrl: before.existing.statusUrl, duplicate: true });
        }
        added = before.metadata;
      }
    }
    reply.hijack();
    const res = reply.raw;
    try {
      await scopes.run({ tenantId, res, ...(added ? { metadata: added } : {}) }, () => tus.handle(req.raw, res));
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
      // Every tus request but a CORS preflight is a tenant's: the app's route auth checks the key
      // in its onRequest, before this route's own onRequest (admission) and before any body byte.
      scoped.route({ method: METHODS.filter((m) => m !== 'OPTIONS'), url, exposeHeadRoute: false, config: { auth: 'tenant' }, onRequest, handler });
      scoped.route({ method: 'OPTIONS', url, config: { auth: 'none' }, handler });
    }
  });
  app.addHook('onClose', async () => {
    await locker.close();
  });
  // Subscribe as soon as the connection is up (and again after a reconnect, ioredis resubscribes
  // by itself), so that the first lock of a request does not wait for it.
  const subscribe = () => void locker.ensureSubscribed().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'resumable uploads: could not subscribe to lock releases yet'));
  if (opts.subscriber.status === 'ready') subscribe();
  else opts.subscriber.once('ready', subscribe);

  return { store, locker, tus };
}

function isTusError(err: unknown): err is { status_code: number; body: string } {
  return typeof err === 'object' && err !== null && typeof (err as { status_code?: unknown }).status_code === 'number' && typeof (err as { body?: unknown }).body === 'string';
}

function notAnImage(): TusResponseError {
  return new TusResponseError(415, 'the bytes are not a supported image (JPEG, PNG, WebP, TIFF, GIF, AVIF, HEIC/HEIF)\n');
}

function photoHeaders(photo: AcceptedUpload): Record<string, string> {
  return { [PHOTO_ID_HEADER]: photo.id, [PHOTO_STATUS_URL_HEADER]: photo.statusUrl, ...(photo.duplicate ? { [PHOTO_DUPLICATE_HEADER]: 'true' } : {}) };
}

function parseResult(text: string): AcceptedUpload {
  const value = JSON.parse(text) as Partial<AcceptedUpload>;
  return { id: String(value.id), status: String(value.status), statusUrl: String(value.statusUrl), ...(value.duplicate === true ? { duplicate: true } : {}) };
}

/** Upload-Metadata as tus reads it; null when malformed (tus itself answers that with 400). */
function parseUploadMetadata(header: string | string[] | undefined): Record<string, string | null> | null {
  if (header === undefined) return {};
  if (Array.isArray(header)) return null;
  try {
    return Metadata.parse(header);
  } catch {
    return null;
  }
}

/** The accept function speaks HttpError (503 when a dependency is away); tus speaks status_code/body. */
function toTusError(err: unknown, log: FastifyBaseLogger, uploadId: string): unknown {
  if (err instanceof TusResponseError) return err;
  if (err instanceof HttpError) return new TusResponseError(err.status, `${err.message}\n`);
  if (isTusError(err)) return err;
  log.error({ err, uploadId }, 'resumable upload: accept failed');
  return new TusResponseError(500, 'internal error\n');
}
