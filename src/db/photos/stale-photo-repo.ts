import type { Db } from '../../shared/db.js';
import { photoColumns, positionOf, toPhotoRow, type KeysetPosition, type PhotoDbRow, type PhotoRow } from './photo-row.js';

/** The reconciler's queries: photos in a non-final state that nothing has moved for a while. */
export class StalePhotoRepo {
  constructor(private readonly db: Db) {}

  /**
   * Photos in a non-final state that no stage has moved for longer than staleMs, oldest first, a
   * page at a time: `after` is the previous page's `next`.
   */
  async findStale(staleMs: number, limit: number, after?: KeysetPosition): Promise<{ items: PhotoRow[]; next: KeysetPosition | null }> {
    const { rows } = await this.db.query<PhotoDbRow & { position: string }>(
      `SELECT ${photoColumns()}, ${positionOf('progressed_at')} AS position
       FROM photos WHERE status IN ('queued', 'processing')
         AND progressed_at < now() - ($1::int * interval '1 millisecond')
         AND ($3::timestamptz IS NULL OR (progressed_at, id) > ($3::timestamptz, $4::uuid))
       ORDER BY progressed_at, id LIMIT $2`,
      [staleMs, limit, after?.position ?? null, after?.id ?? null],
    );
    const last = rows[rows.length - 1];
    return { items: rows.map(toPhotoRow), next: rows.length === limit && last ? { position: last.position, id: last.id } : null };
  }
}
