import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { HttpError, PermanentError, ServiceUnavailableError, UnavailableError } from '../../shared/errors.js';
import { PHOTO_STATUSES } from '../../db/photos/photo-row.js';
import { acceptPhoto, type RejectionCode } from '../../pipeline/accept-photo.js';
import { TenantLimitError } from '../../pipeline/tenant-load.js';
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

/** Multipart text fields are buffered: none is needed, so each is kept small. */
const MULTIPART_FIELD_MAX_BYTES = 1_024;

/** Reads the upload: multipart field `file`, or the raw body with an image/* Content-Type. */
async function readUpload(req: FastifyRequest, maxBytes: number): Promise<{ bytes: Buffer; filename: string | null }> {
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
    return { bytes, filename: sanitizeFilename(part.filename) };
  }
  const body = req.body;
  if (!Buffer.isBuffer(body)) {
    throw new HttpError(415, 'unsupported_media_type', 'send multipart/form-data with field "file", or the image bytes with an image/* Content-Type');
  }
  const header = req.headers['x-filename'];
  return { bytes: body, filename: sanitizeFilename(Array.isArray(header) ? header[0] : header) };
}

function multipartError(err: unknown): HttpError {
  const code = (err as { code?: string }).code;
  if (code === 'FST_REQ_FILE_TOO_LARGE') return new HttpError(413, 'payload_too_large', 'the file is larger than the upload limit');
  if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') return new HttpError(400, 'too_many_parts', 'send exactly one file');
  return new HttpError(400, 'invalid_multipart', `malformed multipart body: ${(err as Error).message}`);
}

/** acceptPhoto's refusals as HTTP statuses. */
const REJECTION_STATUS: Record<RejectionCode, number> = { empty_body: 400, unsupported_media_type: 415, payload_too_large: 413, invalid_data: 400 };

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
  };
  const statusUrl = statusUrlFor(config.PUBLIC_BASE_URL);

  // Load and the tenant's limits are checked in onRequest too (after the key, which the app checks
  // for every tenant route), before a possibly large body is read.
  const admit = async (req: FastifyRequest) => {
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

  app.post('/v1/photos', { config: { auth: 'tenant' }, bodyLimit: config.UPLOAD_MAX_BYTES, onRequest: admit }, async (req, reply) => {
    const tenantId = tenantOf(req);
    const { bytes, filename } = await readUpload(req, config.UPLOAD_MAX_BYTES);
    let accepted;
    try {
      accepted = await acceptPhoto(acceptDeps, { tenantId, bytes, filename, correlationId: req.id });
    } catch (err) {
      if (err instanceof PermanentError && err.code in REJECTION_STATUS) throw new HttpError(REJECTION_STATUS[err.code as RejectionCode], err.code, err.message);
      if (err instanceof UnavailableError) throw new ServiceUnavailableError(err.message, err.retryAfterSeconds);
      throw err;
    }
    const url = statusUrl(accepted.id);
    return reply.code(202).header('location', url).send({ id: accepted.id, status: accepted.status, statusUrl: url });
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
