import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import { ServiceUnavailableError } from '../../shared/errors.js';
import { acceptPhoto } from '../../pipeline/accept-photo.js';
import { acceptCheckedPhoto } from '../../pipeline/accept-checked-photo.js';
import { registerResumableUploads, type AcceptedUpload, type ResumableUploads } from '../resumable/resumable-routes.js';
import { declaredSha256 } from '../content-checksum.js';
import { statusUrlFor } from '../photo-view.js';
import { tenantOf } from '../route-auth.js';
import type { ApiDeps } from '../api-deps.js';
import { acceptError, admission, notifyUrlChecker } from './photos.js';

/**
 * tus 1.0 resumable uploads at /v1/uploads (src/api/resumable), on the same rules as
 * POST /v1/photos: the route auth, load shedding and the tenant's limits at creation (shedding
 * again on every PATCH, which adds bytes to Redis), UPLOAD_MAX_BYTES as the largest Upload-Length,
 * sniffing, and acceptPhoto (or acceptCheckedPhoto with a declared SHA-256) once the last byte is in.
 *
 * A declared checksum (X-Content-SHA256 on the creation request, or `sha256` in Upload-Metadata)
 * is checked against the whole upload before it is accepted (422 checksum_mismatch, and the upload
 * is deleted); when the tenant already has a photo with that content, the creation request is
 * answered 200 with that photo and no upload is created. `notifyUrl` (X-Notify-Url or
 * Upload-Metadata) is checked at creation as for a plain upload.
 */
export async function registerResumableRoutes(app: FastifyInstance, deps: ApiDeps & { subscriber: NonNullable<ApiDeps['subscriber']> }): Promise<ResumableUploads> {
  const { config, photos } = deps;
  const admit = admission(deps);
  const notifyUrls = notifyUrlChecker(deps);
  const statusUrl = statusUrlFor(config.PUBLIC_BASE_URL);
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
  const header = (req: FastifyRequest, name: string): string | undefined => {
    const v = req.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };

  return registerResumableUploads(app, {
    redis: deps.redis,
    subscriber: deps.subscriber,
    keyPrefix: config.REDIS_KEY_PREFIX,
    maxBytes: config.UPLOAD_MAX_BYTES,
    ttlSeconds: config.RESUMABLE_UPLOAD_TTL_SECONDS,
    lockLeaseMs: config.RESUMABLE_LOCK_LEASE_MS,
    log: app.log as FastifyBaseLogger,
    ...(config.PUBLIC_BASE_URL ? { publicBaseUrl: config.PUBLIC_BASE_URL } : {}),

    authenticate: async (req) => {
      const tenantId = tenantOf(req);
      if (req.method === 'POST') await admit(req);
      else if (req.method === 'PATCH' && deps.shedder.sheddingReason) {
        throw new ServiceUnavailableError(`overloaded, try again later (${deps.shedder.sheddingReason})`, 10);
      }
      return tenantId;
    },

    beforeCreate: async (req, tenantId, metadata) => {
      // Digest and Repr-Digest on a creation request would describe that request's own content,
      // not the upload: only X-Content-SHA256 and the metadata speak for the whole file.
      const declared = declaredSha256(
        { 'x-content-sha256': req.headers['x-content-sha256'] },
        typeof metadata.sha256 === 'string' ? { field: 'Upload-Metadata sha256', value: metadata.sha256 } : undefined,
      );
      const notifyUrl = await notifyUrls(tenantId, header(req, 'x-notify-url') ?? (typeof metadata.notifyUrl === 'string' ? metadata.notifyUrl : undefined));
      if (declared) {
        const owner = (await photos.claims.owners(tenantId, [declared])).get(declared);
        if (owner) return { existing: { id: owner.id, status: owner.status, statusUrl: statusUrl(owner.id), duplicate: true } };
      }
      return { metadata: { ...(declared ? { sha256: declared } : {}), ...(notifyUrl ? { notifyUrl } : {}) } };
    },

    accept: async ({ tenantId, bytes, filename, metadata }): Promise<AcceptedUpload> => {
      const notifyUrl = typeof metadata.notifyUrl === 'string' ? metadata.notifyUrl : undefined;
      const request = { tenantId, bytes, filename, ...(notifyUrl ? { notifyUrl } : {}) };
      try {
        if (typeof metadata.sha256 !== 'string') {
          const photo = await acceptPhoto(acceptDeps, request);
          return { id: photo.id, status: photo.status, statusUrl: statusUrl(photo.id) };
        }
        const result = await acceptCheckedPhoto(acceptDeps, { ...request, declaredSha256: metadata.sha256 });
        const photo = result.photo;
        return { id: photo.id, status: photo.status, statusUrl: statusUrl(photo.id), ...(result.kind === 'existing' ? { duplicate: true } : {}) };
      } catch (err) {
        throw acceptError(err);
      }
    },
  });
}
