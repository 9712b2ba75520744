import { stageList } from '../pipeline/graph.js';
import { PIPELINE } from '../pipeline/photo-pipeline.js';
import type { PhotoRow } from '../db/photos/photo-row.js';
import type { VariantRow } from '../db/photos/variant-repo.js';
import { publicFailure } from './failure-reasons.js';

interface VariantView {
  url: string;
  width: number;
  height: number;
  bytes: number;
  contentType: string;
}

export interface PlaceView {
  geonameId: number | null;
  name: string | null;
  admin1: string | null;
  countryCode: string | null;
  countryName: string | null;
  lat: number | null;
  lon: number | null;
  distanceKm: number | null;
  source: string | null;
}

interface StoredPlace {
  geonameId?: number | null;
  name?: string;
  admin1?: string | null;
  countryCode?: string | null;
  countryName?: string | null;
  lat?: number;
  lon?: number;
  distanceKm?: number;
  source?: string;
  reason?: string;
}

/**
 * A photo's place and, when it has none, why: the nearest town within PLACE_MAX_DISTANCE_KM, or the
 * country alone when that could be told, or null with a reason (no GPS, no town near, geocoding
 * failed: it is best effort, the photo completes without it).
 */
export function placeOf(row: Pick<PhotoRow, 'place' | 'gps' | 'exif' | 'stages' | 'stageErrors' | 'status'>): { place: PlaceView | null; placeReason: string | null } {
  const p = row.place as StoredPlace | null;
  if (p && typeof p.geonameId === 'number') {
    const place: PlaceView = {
      geonameId: p.geonameId,
      name: p.name ?? null,
      admin1: p.admin1 ?? null,
      countryCode: p.countryCode ?? null,
      countryName: p.countryName ?? null,
      lat: p.lat ?? null,
      lon: p.lon ?? null,
      distanceKm: p.distanceKm ?? null,
      source: p.source ?? null,
    };
    return { place, placeReason: null };
  }
  const geocodeError = row.stageErrors?.geocode;
  if (geocodeError) return { place: null, placeReason: `geocoding failed: ${publicFailure({ ...geocodeError, stage: 'geocode' }).reason}` };
  if (p?.countryCode) {
    return {
      place: { geonameId: null, name: null, admin1: null, countryCode: p.countryCode, countryName: p.countryName ?? null, lat: null, lon: null, distanceKm: null, source: p.source ?? null },
      placeReason: p.reason ?? null,
    };
  }
  if (p?.reason) return { place: null, placeReason: p.reason };
  if (!row.gps) {
    const note = (row.exif as { gpsNote?: string | null } | null)?.gpsNote;
    return { place: null, placeReason: note ? `no GPS: ${note}` : row.exif ? 'no GPS in the photo' : null };
  }
  return { place: null, placeReason: row.stages.geocode === 'pending' || row.stages.geocode === undefined ? null : 'no place' };
}

/** The JSON a client polls: GET /v1/photos/:id. */
export async function toPhotoView(
  row: PhotoRow,
  variants: VariantRow[],
  presign: (key: string) => Promise<string>,
  statusUrl: string,
): Promise<Record<string, unknown>> {
  const out: Record<string, VariantView> = {};
  for (const v of variants) {
    const url = v.kind === 'original' ? await presign(v.s3Key) : v.url;
    if (!url) continue;
    out[v.kind] = { url, width: v.width, height: v.height, bytes: v.bytes, contentType: v.contentType };
  }
  const exif = row.exif as { make?: string | null; model?: string | null; takenAt?: string | null; orientation?: number | null } | null;
  const stages = stageList(PIPELINE, row.status, row.stages);
  return {
    id: row.id,
    status: row.status,
    statusUrl,
    duplicateOf: row.duplicateOf,
    sha256: row.sha256,
    file:
      row.file && row.file.width
        ? { format: row.file.format, width: row.file.width, height: row.file.height, bytes: row.file.bytes, originalName: row.originalName }
        : null,
    exif: exif
      ? { make: exif.make ?? null, model: exif.model ?? null, takenAt: exif.takenAt ?? null, orientation: exif.orientation ?? null, gps: row.gps }
      : null,
    ...placeOf(row),
    variants: Object.keys(out).length > 0 ? out : null,
    stages,
    // The stored reason is for operators (it may name S3 keys or hosts); tenants get the public one.
    error: row.error ? publicFailure(row.error) : null,
    // Failures of best-effort stages: the photo went on without them (and can be replayed).
    warnings: Object.entries(row.stageErrors ?? {}).map(([stage, e]) => publicFailure({ ...e, stage })),
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    completedAt: row.completedAt?.toISOString() ?? null,
  };
}

/**
 * Where a photo's status is read. Without PUBLIC_BASE_URL the URL is relative (RFC 9110 allows a
 * relative Location): building it from the request's Host header would hand clients whatever host
 * they (or anyone) claimed.
 */
export function statusUrlFor(publicBaseUrl: string | undefined): (id: string) => string {
  const base = publicBaseUrl?.replace(/\/$/, '') ?? '';
  return (id) => `${base}/v1/photos/${id}`;
}
