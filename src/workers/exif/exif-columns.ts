import type { NormalisedExif } from '../../imaging/exif.js';
import { float8, jsonb, type StageColumns } from '../../db/photos/stage-columns.js';

/** The columns the exif stage owns. */
export function exifColumns(exif: NormalisedExif, raw: Record<string, unknown> | null): StageColumns {
  return {
    exif: jsonb(exif),
    exif_raw: jsonb(raw),
    gps_lat: float8(exif.gps?.lat),
    gps_lon: float8(exif.gps?.lon),
    gps_alt: float8(exif.gps?.alt),
  };
}
