import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { MultipartFields } from '@fastify/multipart';
import { z } from 'zod';
import { HttpError, PermanentError, ServiceUnavailableError, UnavailableError } from '../../shared/errors.js';
import { PHOTO_STATUSES } from '../../db/photos/photo-row.js';
import { acceptPhoto, ContentOwnedError, SUPPORTED_FORMATS_TEXT, type RejectionCode } from '../../pipeline/accept-photo.js';
import { acceptCheckedPhoto } from '../../pipeline/accept-checked-photo.js';
import { TenantLimitError } from '../../pipeline/tenant-load.js';
import { SNIFF_BYTES, sniffImageFormat } from '../../imaging/sniff.js';
import { InvalidWebhookUrlError, validateWebhookUrl, webhookPolicy } from '../../webhooks/webhook-url.js';
import { declaredSha256, parseSha256 } from '../content-checksum.js';
import { sanitizeFilename } from '../filename.js';
import { statusUrlFor, toPhotoView } from '../photo-view.js';
import { decodeCursor, encodeCursor, intParam, optionalEnumParam, queryError, uuidParam } from '../query.js';
import { tenantOf } from '../route-auth.js';
import type { ApiDeps } from '../api-deps.js';

const listQuery = z.object({
  // `?status=` (empty) means any status, as an unset filter.
  status: optionalEnumParam(PHOTO_STATUSES),
  limit: intParam(1, 200, 50),
  cursor: z.preprocess((v) => (v === '' ? undefined : v), z.string().max(200).optional()),
});

/** Multipart text fields are buffered: only `notifyUrl` and `sha256` are read, so each is kept small. */
const MULTIPART_FIELD_MAX_BYTES = 2_048;

/** A check request names at most this many checksums. */
const CHECK_MAX_CHECKSUMS = 1_000;

const SEND_HELP = 'send the image bytes as the body (Content-Type image/*, application/octet-stream, or none) or multipart/form-data with the image in field "file"';

/** What the upload carried besides its bytes: a display name and the multipart text fields before the file. */
interface Upload {
  bytes: Buffer;
  filename: string | null;
  fields: Record<string, string>;
}

/**
 * Reads the upload: multipart field `file`, or the raw body whatever its Content-Type (image/*,
 * application/octet-stream, none, application/x-www-form-urlencoded as curl --data-binary sends it
 * without -H, anything else): the bytes decide, by magic number.
 */
async function readUpload(req: FastifyRequest, maxBytes: number): Promise<Upload> {
  if (req.isMultipart()) {
    let part;
    try {
      part = await req.file({ limits: { fileSize: maxBytes, files: 1, fields: 10, parts: 20, fieldSize: MULTIPART_FIELD_MAX_BYTES, headerPairs: 100 } });
    } catch (err) {
      throw multipartError(err);
    }
    if (!part) throw new HttpError(400, 'missing_file', 'multipart body has no file part; send the image in field "file"');
    if (part.fieldname !== 'file') {
      part.file.resume();
      throw new HttpError(400, 'missing_file', `unexpected file field "${part.fieldname}"; send the image in field "file"`);
    }
    let bytes: Buffer;
    try {
      bytes = await part.toBuffer();
    } catch (err) {
      throw multipartError(err);
    }
    return { bytes, filename: sanitizeFilename(part.filename), fields: textFields(part.fields) };
  }
  const body: unknown = req.body;
  const header = req.headers['x-filename'];
  const filename = sanitizeFilename(Array.isArray(header) ? header[0] : header);
  // No body at all (no Content-Type, no length): the empty upload acceptPhoto refuses.
  if (body === undefined || body === null) return { bytes: Buffer.alloc(0), filename, fields: {} };
  if (Buffer.isBuffer(body)) return { bytes: body, filename, fields: {} };
  throw notAnImage(req.headers['content-type']);
}

/** The multipart text fields this route reads (those that came before the file). */
function textFields(fields: MultipartFields): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['notifyUrl', 'sha256']) {
    const f = fields[name];
    if (f === undefined) continue;
    if (Array.isArray(f) || f.type !== 'field' || typeof f.value !== 'string') throw new HttpError(400, 'invalid_field', `multipart field "${name}" must be given once, as text, before the file`);
    if (f.valueTruncated) throw new HttpError(400, 'invalid_field', `multipart field "${name}" is longer than ${MULTIPART_FIELD_MAX_BYTES} bytes`);
    out[name] = f.value;
  }
  return out;
}

/** 415 in words a client can act on, naming what curl sends by default when that is what came. */
function notAnImage(contentType: string | undefined): HttpError {
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (mediaType === 'application/x-www-form-urlencoded') {
    return new HttpError(
      415,
      'unsupported_media_type',
      `the body came as application/x-www-form-urlencoded (what curl --data-binary sends without -H) and is not a supported image (${SUPPORTED_FORMATS_TEXT}); ${SEND_HELP}, e.g. curl -H 'Content-Type: application/octet-stream' --data-binary @photo.jpg`,
    );
  }
  return new HttpError(415, 'unsupported_media_type', `the body is not a supported image (${SUPPORTED_FORMATS_TEXT}); ${SEND_HELP}`);
}

function multipartError(err: unknown): HttpError {
  const code = (err as { code?: string }).code;
  if (code === 'FST_REQ_FILE_TOO_LARGE') return new HttpError(413, 'payload_too_large', 'the file is larger than the upload limit');
  if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') return new HttpError(400, 'too_many_parts', 'send exactly one file');
  return new HttpError(400, 'invalid_multipart', `malformed multipart body: ${(err as Error).message}`);
}

/** acceptPhoto's refusals as HTTP statuses. */
const REJECTION_STATUS: Record<RejectionCode, number> = { empty_body: 400, unsupported_media_type: 415, payload_too_large: 413, invalid_data: 400, checksum_mismatch: 422 };

/** The one query parameter POST /v1/photos reads. */
function queryValue(req: FastifyRequest, name: string): string | undefined {
  const v = (req.query as Record<string, unknown> | undefined)?.[name];
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string') throw new HttpError(400, 'invalid_query', `${name}: give it once`);
  return v;
}

function headerValue(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

const checkBody = z.object({ checksums: z.array(z.unknown()) });

export function registerPhotoRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { config, photos } = deps;
  const acceptDeps = {
    config,
    blobs: deps.blobs,
    intake: photos.intake,
    broker: deps.broker,
    log: deps.log,
    sheddingReason: () => deps.shedder.sheddingReason,
    lanes: deps.tenantLoad,
    contents: photos.claims,
  };
  const statusUrl = statusUrlFor(config.PUBLIC_BASE_URL);
  const notifyUrls = notifyUrlChecker(deps);

  // Load and the tenant's limits are checked in onRequest too (after the key, which the app checks
  // for every tenant route), before a possibly large body is read.
  const admit = admission(deps);

  // The upload route in a context of its own, so that its parsers apply to it alone: any body that
  // is not multipart is buffered as bytes up to the route's limit and sniffed, whatever its
  // Content-Type (JSON and text included, which other routes parse as usual).
  void app.register(async (uploads) => {
    const asBytes = (_req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: Buffer) => void) => done(null, body);
    uploads.addContentTypeParser('*', { parseAs: 'buffer' }, asBytes);
    uploads.addContentTypeParser('application/json', { parseAs: 'buffer' }, asBytes);
    uploads.addContentTypeParser('text/plain', { parseAs: 'buffer' }, asBytes);

    uploads.post('/v1/photos', { config: { auth: 'tenant' }, bodyLimit: config.UPLOAD_MAX_BYTES, onRequest: admit }, async (req, reply) => {
      const tenantId = tenantOf(req);
      const upload = await readUpload(req, config.UPLOAD_MAX_BYTES);
      if (upload.bytes.length > 0 && !sniffImageFormat(upload.bytes.subarray(0, SNIFF_BYTES))) throw notAnImage(req.headers['content-type']);
      const sha256Field = upload.fields.sha256;
      const declared = declaredSha256(req.headers, sha256Field === undefined ? undefined : { field: 'multipart field sha256', value: sha256Field });
      const notifyUrl = await notifyUrls(tenantId, headerValue(req, 'x-notify-url') ?? queryValue(req, 'notifyUrl') ?? upload.fields.notifyUrl);
      const request = { tenantId, bytes: upload.bytes, filename: upload.filename, correlationId: req.id, ...(notifyUrl ? { notifyUrl } : {}) };
      let accepted;
      try {
        if (declared === null) {
          accepted = await acceptPhoto(acceptDeps, request);
        } else {
          const result = await acceptCheckedPhoto(acceptDeps, { ...request, declaredSha256: declared });
          if (result.kind === 'existing') {
            // Known content: nothing stored or queued; the photo that holds it is the answer.
            const url = statusUrl(result.photo.id);
            return reply.code(200).header('location', url).send({ id: result.photo.id, status: result.photo.status, statusUrl: url, duplicate: true });
          }
          accepted = result.photo;
        }
      } catch (err) {
        throw acceptError(err);
      }
      const url = statusUrl(accepted.id);
      return reply.code(202).header('location', url).send({ id: accepted.id, status: accepted.status, statusUrl: url });
    });
  });

  app.post('/v1/photos/check', { config: { auth: 'tenant' }, bodyLimit: CHECK_BODY_LIMIT_BYTES }, async (req) => {
    const tenantId = tenantOf(req);
    const parsed = checkBody.safeParse(req.body);
    if (!parsed.success) throw new HttpError(400, 'invalid_body', `send {"checksums": ["<sha256 hex or base64>", ...]} with 1 to ${CHECK_MAX_CHECKSUMS} entries`);
    const count = parsed.data.checksums.length;
    if (count === 0 || count > CHECK_MAX_CHECKSUMS) throw new HttpError(400, 'invalid_body', `checksums: ${count} entries; send 1 to ${CHECK_MAX_CHECKSUMS}`);
    const entries = parsed.data.checksums.map((value, i) => {
      const sha256 = typeof value === 'string' ? parseSha256(value) : null;
      if (!sha256) {
        const shown = typeof value === 'string' ? JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value) : `a ${value === null ? 'null' : typeof value}`;
        throw new HttpError(400, 'invalid_checksum', `checksums[${i}]: ${shown} is not a SHA-256 (64 hex digits, or 44 base64 characters)`);
      }
      return { checksum: value as string, sha256 };
    });
    const owners = await photos.claims.owners(tenantId, entries.map((e) => e.sha256));
    return {
      results: entries.map((e) => {
        const owner = owners.get(e.sha256);
        return owner ? { ...e, exists: true, photoId: owner.id, status: owner.status } : { ...e, exists: false };
      }),
    };
  });

  app.get<{ Params: { id: string } }>('/v1/photos/:id', { config: { auth: 'tenant' } }, async (req) => {
    const tenantId = tenantOf(req);
    if (!uuidParam.safeParse(req.params.id).success) throw new HttpError(404, 'not_found', 'no such photo');
    const row = await photos.reads.getForTenant(tenantId, req.params.id);
    if (!row) throw new HttpError(404, 'not_found', 'no such photo');
    const variants = row.status === 'complete' || row.status === 'failed' || row.status === 'processing' ? await photos.variants.forPhoto(row.id) : [];
    return toPhotoView(row, variants, (k) => deps.storage.presignGet(k), statusUrl(row.id));
  });

  app.get('/v1/photos', { config: { auth: 'tenant' } }, async (req) => {
    const tenantId = tenantOf(req);
    const parsed = listQuery.safeParse(req.query);
    if (!parsed.success) throw queryError('invalid_query', parsed.error);
    const q = parsed.data;
    const page = await photos.reads.list(tenantId, { status: q.status, limit: q.limit, before: q.cursor ? decodeCursor(q.cursor) : undefined });
    const variants = await photos.variants.forPhotos(page.items.map((r) => r.id));
    const items = await Promise.all(page.items.map((r) => toPhotoView(r, variants.get(r.id) ?? [], (k) => deps.storage.presignGet(k), statusUrl(r.id))));
    const nextCursor = page.next ? encodeCursor(page.next) : null;
    return { items, nextCursor };
  });
}

/** 1,000 checksums as JSON, hex and quoted: about 67 KB. */
const CHECK_BODY_LIMIT_BYTES = 128 * 1024;

/** acceptPhoto's typed errors as HTTP answers. */
export function acceptError(err: unknown): unknown {
  if (err instanceof PermanentError && err.code in REJECTION_STATUS) return new HttpError(REJECTION_STATUS[err.code as RejectionCode], err.code, err.message);
  if (err instanceof UnavailableError) return new ServiceUnavailableError(err.message, err.retryAfterSeconds);
  // The photo holding these bytes kept failing while we looked (acceptCheckedPhoto gave up): try again.
  if (err instanceof ContentOwnedError) return new ServiceUnavailableError('the content changed owner while it was checked; try again', 1);
  return err;
}

/**
 * Shedding and the tenant's limits, before a new photo's body is read (POST /v1/photos, and the
 * creation of a resumable upload): 503 while the system sheds load, 429 over the tenant's rate or
 * photos in flight.
 */
export function admission(deps: Pick<ApiDeps, 'shedder' | 'tenantLoad'>): (req: FastifyRequest) => Promise<void> {
  return async (req) => {
    const tenantId = tenantOf(req);
    const shedding = deps.shedder.sheddingReason;
    if (shedding) throw new ServiceUnavailableError(`overloaded, try again later (${shedding})`, 10);
    try {
      await deps.tenantLoad.admit(tenantId);
    } catch (err) {
      if (err instanceof TenantLimitError) throw new HttpError(429, err.code, err.message, { 'retry-after': String(err.retryAfterSeconds) });
      if (err instanceof UnavailableError) throw new ServiceUnavailableError(err.message, err.retryAfterSeconds);
      throw err;
    }
  };
}

/**
 * Checks an upload's notifyUrl (header X-Notify-Url, query notifyUrl, or multipart field notifyUrl):
 * an http(s) URL deliveries may reach (validateWebhookUrl), for a tenant with a registered webhook,
 * whose secret signs the event. Undefined when none was given.
 */
export function notifyUrlChecker(deps: Pick<ApiDeps, 'config' | 'webhooks'>): (tenantId: string, value: string | undefined) => Promise<string | undefined> {
  const policy = webhookPolicy(deps.config);
  return async (tenantId, value) => {
    if (value === undefined) return undefined;
    let url: string;
    try {
      url = await validateWebhookUrl(value, policy);
    } catch (err) {
      if (err instanceof InvalidWebhookUrlError) throw new HttpError(400, 'invalid_notify_url', `notifyUrl: ${err.message}`);
      throw err;
    }
    if (!(await deps.webhooks.get(tenantId))) {
      throw new HttpError(400, 'webhook_not_registered', 'notifyUrl needs a registered webhook: its secret signs the event (PUT /v1/webhook first)');
    }
    return url;
  };
}
