import type { Db } from '../../shared/db.js';
import type { PlaceMatch } from '../../places/place-types.js';
import { photoColumns, positionOf, toPhotoRow, type PhotoDbRow, type PhotoRow } from '../photos/photo-row.js';

export interface PlaceRow {
  geonameId: number;
  name: string;
  admin1: string | null;
  countryCode: string;
  countryName: string;
  lat: number;
  lon: number;
}

/** A place with what one tenant has of it: the tenant's photo count and newest photo there. */
export interface TenantPlace extends PlaceRow {
  photoCount: number;
  newestPhotoId: string;
  newestPhotoAt: Date;
}

interface PlaceDbRow {
  geoname_id: string;
  name: string;
  admin1: string | null;
  country_code: string;
  country_name: string;
  lat: number;
  lon: number;
}

const toPlace = (r: PlaceDbRow): PlaceRow => ({
  geonameId: Number(r.geoname_id),
  name: r.name,
  admin1: r.admin1,
  countryCode: r.country_code,
  countryName: r.country_name,
  lat: r.lat,
  lon: r.lon,
});

export interface PlacePosition {
  at: string;
  id: number;
}

/**
 * Places (GeoNames towns), one row per GeoNames id however many photos, processes and concurrent
 * geocodes find it: the insert is an upsert on the primary key, so concurrent first sightings
 * end as one row. Places are shared data; what a tenant sees of them is always computed from its
 * own photos.
 */
export class PlaceRepo {
  constructor(private readonly db: Db) {}

  async upsert(p: PlaceMatch): Promise<void> {
    await this.db.query(
      `INSERT INTO places (geoname_id, name, admin1, country_code, country_name, lat, lon, source)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (geoname_id) DO UPDATE SET name = EXCLUDED.name, admin1 = EXCLUDED.admin1, country_code = EXCLUDED.country_code,
         country_name = EXCLUDED.country_name, lat = EXCLUDED.lat, lon = EXCLUDED.lon, source = EXCLUDED.source, updated_at = now()
       WHERE (places.name, places.admin1, places.country_code, places.lat, places.lon) IS DISTINCT FROM
             (EXCLUDED.name, EXCLUDED.admin1, EXCLUDED.country_code, EXCLUDED.lat, EXCLUDED.lon)`,
      [p.geonameId, p.name, p.admin1, p.countryCode, p.countryName, p.lat, p.lon, p.source],
    );
  }

  /** This tenant's places, the most recently photographed first (keyset on newest photo time, id). */
  async forTenant(tenantId: string, opts: { limit: number; before?: PlacePosition }): Promise<{ items: TenantPlace[]; next: PlacePosition | null }> {
    const { rows } = await this.db.query<PlaceDbRow & { photo_count: number; newest_id: string; newest_at: Date; position: string }>(
      `WITH mine AS (
         SELECT place_id, count(*)::int AS photo_count, max(created_at) AS newest_at,
                (array_agg(id ORDER BY created_at DESC, id DESC))[1] AS newest_id
         FROM photos WHERE tenant_id = $1 AND place_id IS NOT NULL AND status IN ('processing', 'complete')
         GROUP BY place_id)
       SELECT pl.geoname_id, pl.name, pl.admin1, pl.country_code, pl.country_name, pl.lat, pl.lon,
              mine.photo_count, mine.newest_id, mine.newest_at, ${positionOf('mine.newest_at')} AS position
       FROM mine JOIN places pl ON pl.geoname_id = mine.place_id
       WHERE ($3::timestamptz IS NULL OR (mine.newest_at, pl.geoname_id) < ($3::timestamptz, $4::bigint))
       ORDER BY mine.newest_at DESC, pl.geoname_id DESC LIMIT $2`,
      [tenantId, opts.limit + 1, opts.before?.at ?? null, opts.before?.id ?? null],
    );
    const page = rows.slice(0, opts.limit);
    const last = page[page.length - 1];
    return {
      items: page.map((r) => ({ ...toPlace(r), photoCount: r.photo_count, newestPhotoId: r.newest_id, newestPhotoAt: r.newest_at })),
      next: rows.length > opts.limit && last ? { at: last.position, id: Number(last.geoname_id) } : null,
    };
  }

  /** The place, if this tenant has a photo there (another tenant's places are not visible). */
  async getForTenant(tenantId: string, geonameId: number): Promise<PlaceRow | null> {
    const { rows } = await this.db.query<PlaceDbRow>(
      `SELECT pl.geoname_id, pl.name, pl.admin1, pl.country_code, pl.country_name, pl.lat, pl.lon FROM places pl
       WHERE pl.geoname_id = $2 AND EXISTS (SELECT 1 FROM photos WHERE tenant_id = $1 AND place_id = $2)`,
      [tenantId, geonameId],
    );
    return rows[0] ? toPlace(rows[0]) : null;
  }

  /** This tenant's photos at a place, newest first (keyset as the photo list). */
  async photos(tenantId: string, geonameId: number, opts: { limit: number; before?: { createdAt: string; id: string } }): Promise<{ items: PhotoRow[]; next: { createdAt: string; id: string } | null }> {
    const { rows } = await this.db.query<PhotoDbRow & { position: string }>(
      `SELECT ${photoColumns()}, ${positionOf('created_at')} AS position FROM photos
       WHERE tenant_id = $1 AND place_id = $2 AND ($4::timestamptz IS NULL OR (created_at, id) < ($4::timestamptz, $5::uuid))
       ORDER BY created_at DESC, id DESC LIMIT $3`,
      [tenantId, geonameId, opts.limit + 1, opts.before?.createdAt ?? null, opts.before?.id ?? null],
    );
    const page = rows.slice(0, opts.limit);
    const last = page[page.length - 1];
    return { items: page.map(toPhotoRow), next: rows.length > opts.limit && last ? { createdAt: last.position, id: last.id } : null };
  }

  /** Photos with GPS to geocode again (photopipe places regeocode): complete ones, optionally of one tenant. */
  async withGps(opts: { tenantId?: string; limit: number; after?: string }): Promise<{ photoId: string; tenantId: string }[]> {
    const { rows } = await this.db.query<{ id: string; tenant_id: string }>(
      `SELECT id, tenant_id FROM photos
       WHERE gps_lat IS NOT NULL AND status = 'complete' AND ($1::text IS NULL OR tenant_id = $1) AND ($3::uuid IS NULL OR id > $3)
       ORDER BY id LIMIT $2`,
      [opts.tenantId ?? null, opts.limit, opts.after ?? null],
    );
    return rows.map((r) => ({ photoId: r.id, tenantId: r.tenant_id }));
  }
}
