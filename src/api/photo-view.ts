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
    place: row.place,
    variants: Object.keys(out).length > 0 ? out : null,
    stages,
    // The stored reason is for operators (it may name S3 keys or hosts); tenants get the public one.
    error: row.error ? publicFailure(row.error) : null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    completedAt: row.completedAt?.toISOString() ?? null,
  };
}
