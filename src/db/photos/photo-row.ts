import type { StageName } from '../../pipeline/photo-pipeline.js';
import type { PhotoFacts, StageState } from '../../pipeline/graph.js';

export type { StageState };
export type PhotoStatus = 'queued' | 'processing' | 'complete' | 'duplicate' | 'failed';
export type PhotoLane = 'interactive' | 'bulk';
/** What a photo is for: an upload, or an image a batch downloaded (converted to the batch's output). */
export type PhotoProfile = 'photo' | 'batch';

/** A batch's output: what the convert stage makes of a batch photo. */
export interface OutputSpec {
  format: 'jpeg' | 'webp' | 'png' | 'avif';
  /** Longest side in pixels; smaller images are not enlarged. */
  maxSize: number;
  quality: number;
}
export const PHOTO_STATUSES = ['queued', 'processing', 'complete', 'duplicate', 'failed'] as const satisfies readonly PhotoStatus[];
export type VariantKind = 'original' | 'framed' | 'thumbnail' | 'converted';
export type Stages = Partial<Record<StageName, StageState>>;

export interface FileInfo {
  format: string;
  width: number;
  height: number;
  bytes: number;
  /** Ingest stored a decoded working copy (HEIC): renditions are made from it, not from the upload. */
  workingCopy?: boolean;
}

export interface GpsPoint {
  lat: number;
  lon: number;
  alt: number | null;
}

export interface PhotoError {
  stage: string;
  reason: string;
  code?: string;
  errorClass?: string;
  attempts?: number;
}

export interface PhotoRow {
  id: string;
  tenantId: string;
  status: PhotoStatus;
  lane: PhotoLane;
  profile: PhotoProfile;
  output: OutputSpec | null;
  sha256: string | null;
  duplicateOf: string | null;
  originalName: string | null;
  contentType: string | null;
  file: FileInfo | null;
  exif: Record<string, unknown> | null;
  gps: GpsPoint | null;
  place: Record<string, unknown> | null;
  placeId: number | null;
  stages: Stages;
  error: PhotoError | null;
  /** Failures of best-effort stages (they did not fail the photo). */
  stageErrors: Record<string, PhotoError> | null;
  createdAt: Date;
  updatedAt: Date;
  progressedAt: Date;
  completedAt: Date | null;
}

/** The photos table's columns as pg returns them (jsonb parsed, timestamptz as Date). */
export interface PhotoDbRow {
  id: string;
  tenant_id: string;
  status: PhotoStatus;
  lane: PhotoLane;
  profile: PhotoProfile;
  output: OutputSpec | null;
  sha256: string | null;
  duplicate_of: string | null;
  original_name: string | null;
  content_type: string | null;
  file: FileInfo | null;
  exif: Record<string, unknown> | null;
  gps_lat: number | null;
  gps_lon: number | null;
  gps_alt: number | null;
  place: Record<string, unknown> | null;
  place_id: string | null;
  stages: Stages | null;
  error: PhotoError | null;
  stage_errors: Record<string, PhotoError> | null;
  created_at: Date;
  updated_at: Date;
  progressed_at: Date;
  completed_at: Date | null;
}

export const PHOTO_COLUMNS = [
  'id', 'tenant_id', 'status', 'lane', 'profile', 'output', 'sha256', 'duplicate_of', 'original_name', 'content_type', 'file', 'exif',
  'gps_lat', 'gps_lon', 'gps_alt', 'place', 'place_id', 'stages', 'error', 'stage_errors', 'created_at', 'updated_at', 'progressed_at', 'completed_at',
] as const satisfies readonly (keyof PhotoDbRow)[];

/** The column list for SELECT/RETURNING, optionally qualified with a table alias. */
export const photoColumns = (alias?: string): string => PHOTO_COLUMNS.map((c) => (alias ? `${alias}.${c}` : c)).join(', ');

export function toPhotoRow(r: PhotoDbRow): PhotoRow {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    status: r.status,
    lane: r.lane,
    profile: r.profile,
    output: r.output,
    sha256: r.sha256,
    duplicateOf: r.duplicate_of,
    originalName: r.original_name,
    contentType: r.content_type,
    file: r.file,
    exif: r.exif,
    gps: r.gps_lat === null || r.gps_lon === null ? null : { lat: r.gps_lat, lon: r.gps_lon, alt: r.gps_alt },
    place: r.place,
    // bigint comes back as text from pg; GeoNames ids fit in a double.
    placeId: r.place_id === null ? null : Number(r.place_id),
    stages: r.stages ?? {},
    error: r.error,
    stageErrors: r.stage_errors,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    progressedAt: r.progressed_at,
    completedAt: r.completed_at,
  };
}

/** The facts stage conditions look at, from a photo's recorded columns. */
export function factsOf(p: { gps: { lat: number; lon: number } | null; profile: PhotoProfile }): PhotoFacts {
  return { gps: p.gps ? { lat: p.gps.lat, lon: p.gps.lon } : null, profile: p.profile };
}

/**
 * Which photo owns its content, as the partial unique index photos_tenant_sha256_unique defines it
 * (migrations): not a duplicate and not failed. `p` is the candidate owner.
 */
export const OWNS_CONTENT = `p.duplicate_of IS NULL AND p.status <> 'failed'`;

/**
 * `p` and `me` are in the same dedupe scope (the rest of that index's key besides the hash): the
 * same tenant, profile and output, so an upload and a batch image, or two batches' different
 * outputs, never count as duplicates of each other.
 */
export const SAME_SCOPE = `p.tenant_id = me.tenant_id AND p.profile = me.profile AND COALESCE(p.output, '{}'::jsonb) = COALESCE(me.output, '{}'::jsonb)`;

/**
 * A timestamp column as keyset position text with Postgres' microseconds: a JS Date keeps only
 * milliseconds, and a position cut to the millisecond skips or repeats rows of the same millisecond.
 */
export const positionOf = (column: string): string => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** A keyset position: positionOf() text plus the row id that breaks ties. */
export interface KeysetPosition {
  position: string;
  id: string;
}

/**
 * Which photo, and whose: every write names both, so a message that names another tenant's photo
 * (forged, or a bug) writes nothing.
 */
export interface PhotoRef {
  photoId: string;
  tenantId: string;
}

/** pg's error for a violated unique index, told apart by SQLSTATE (never by message). */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '23505';
}
