import type { Db } from '../../shared/db.js';
import type { PhotoRef, VariantKind } from './photo-row.js';

export interface VariantRow {
  kind: VariantKind;
  s3Key: string;
  url: string | null;
  width: number;
  height: number;
  bytes: number;
  contentType: string;
}

interface VariantDbRow {
  photo_id: string;
  kind: VariantKind;
  s3_key: string;
  url: string | null;
  width: number;
  height: number;
  bytes: number;
  content_type: string;
}

/** A photo's stored objects (original and renditions), one row each. */
export class VariantRepo {
  constructor(private readonly db: Db) {}

  /** One statement for all of a photo's variants; re-running replaces them (same keys, same rows). */
  async upsert(ref: PhotoRef, variants: VariantRow[]): Promise<void> {
    if (variants.length === 0) return;
    const params: unknown[] = [ref.photoId, ref.tenantId];
    const values = variants.map((v) => {
      params.push(v.kind, v.s3Key, v.url, v.width, v.height, v.bytes, v.contentType);
      const n = params.length;
      return `($${n - 6}, $${n - 5}, $${n - 4}, $${n - 3}::int, $${n - 2}::int, $${n - 1}::int, $${n})`;
    });
    // Only for a photo of this tenant (a row that names another tenant's photo inserts nothing).
    await this.db.query(
      `INSERT INTO photo_variants (photo_id, kind, s3_key, url, width, height, bytes, content_type)
       SELECT $1::uuid, v.* FROM (VALUES ${values.join(', ')}) AS v(kind, s3_key, url, width, height, bytes, content_type)
       WHERE EXISTS (SELECT 1 FROM photos WHERE id = $1 AND tenant_id = $2)
       ON CONFLICT (photo_id, kind) DO UPDATE SET s3_key = EXCLUDED.s3_key, url = EXCLUDED.url, width = EXCLUDED.width,
         height = EXCLUDED.height, bytes = EXCLUDED.bytes, content_type = EXCLUDED.content_type`,
      params,
    );
  }

  async forPhoto(photoId: string): Promise<VariantRow[]> {
    return (await this.forPhotos([photoId])).get(photoId) ?? [];
  }

  /** The variants of several photos in one query (list pages). */
  async forPhotos(photoIds: string[]): Promise<Map<string, VariantRow[]>> {
    const out = new Map<string, VariantRow[]>();
    if (photoIds.length === 0) return out;
    const { rows } = await this.db.query<VariantDbRow>(
      `SELECT photo_id, kind, s3_key, url, width, height, bytes, content_type FROM photo_variants WHERE photo_id = ANY($1::uuid[]) ORDER BY kind`,
      [photoIds],
    );
    for (const r of rows) {
      const list = out.get(r.photo_id) ?? [];
      list.push({ kind: r.kind, s3Key: r.s3_key, url: r.url, width: r.width, height: r.height, bytes: r.bytes, contentType: r.content_type });
      out.set(r.photo_id, list);
    }
    return out;
  }
}
