import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { HttpError } from '../../shared/errors.js';
import { decodeCursor, decodePlaceCursor, encodeCursor, encodePlaceCursor, geonameIdParam, intParam, queryError } from '../query.js';
import { statusUrlFor, toPhotoView } from '../photo-view.js';
import { tenantOf } from '../route-auth.js';
import type { ApiDeps } from '../api-deps.js';

const pageQuery = z.object({
  limit: intParam(1, 200, 50),
  cursor: z.preprocess((v) => (v === '' ? undefined : v), z.string().max(200).optional()),
});

/**
 * The tenant's places: where its photos were taken, with how many photos and the newest one, and
 * the photos of one place. Places are shared GeoNames data, but what a tenant sees is computed from
 * its own photos only: another tenant's place is a 404, and counts never include other tenants.
 */
export function registerPlaceRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const statusUrl = statusUrlFor(deps.config.PUBLIC_BASE_URL);

  app.get('/v1/places', { config: { auth: 'tenant' } }, async (req) => {
    const tenantId = tenantOf(req);
    const q = pageQuery.safeParse(req.query);
    if (!q.success) throw queryError('invalid_query', q.error);
    const page = await deps.places.forTenant(tenantId, { limit: q.data.limit, before: q.data.cursor ? decodePlaceCursor(q.data.cursor) : undefined });
    return {
      items: page.items.map((p) => ({
        id: p.geonameId,
        geonameId: p.geonameId,
        name: p.name,
        admin1: p.admin1,
        countryCode: p.countryCode,
        countryName: p.countryName,
        lat: p.lat,
        lon: p.lon,
        photoCount: p.photoCount,
        newestPhoto: { id: p.newestPhotoId, createdAt: p.newestPhotoAt.toISOString(), statusUrl: statusUrl(p.newestPhotoId) },
        photosUrl: `/v1/places/${p.geonameId}/photos`,
      })),
      nextCursor: page.next ? encodePlaceCursor(page.next) : null,
    };
  });

  app.get<{ Params: { id: string } }>('/v1/places/:id/photos', { config: { auth: 'tenant' } }, async (req) => {
    const tenantId = tenantOf(req);
    const id = geonameIdParam.safeParse(req.params.id);
    if (!id.success) throw new HttpError(404, 'not_found', 'no such place');
    const q = pageQuery.safeParse(req.query);
    if (!q.success) throw queryError('invalid_query', q.error);
    const place = await deps.places.getForTenant(tenantId, id.data);
    if (!place) throw new HttpError(404, 'not_found', 'no such place');
    const page = await deps.places.photos(tenantId, id.data, { limit: q.data.limit, before: q.data.cursor ? decodeCursor(q.data.cursor) : undefined });
    const variants = await deps.photos.variants.forPhotos(page.items.map((r) => r.id));
    const items = await Promise.all(page.items.map((r) => toPhotoView(r, variants.get(r.id) ?? [], (k) => deps.storage.presignGet(k), statusUrl(r.id))));
    return { place: { id: place.geonameId, ...place }, items, nextCursor: page.next ? encodeCursor(page.next) : null };
  });
}
