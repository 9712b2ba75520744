import type { Db } from '../../shared/db.js';
import { photoColumns, positionOf, toPhotoRow, type PhotoDbRow, type PhotoRow, type PhotoStatus } from './photo-row.js';

export interface ListPosition {
  createdAt: string;
  id: string;
}

/** What the status API reads. */
export class PhotoReadRepo {
  constructor(private readonly db: Db) {}

  async get(id: string): Promise<PhotoRow | null> {
    const { rows } = await this.db.query<PhotoDbRow>(`SELECT ${photoColumns()} FROM photos WHERE id = $1`, [id]);
    return rows[0] ? toPhotoRow(rows[0]) : null;
  }

  async getForTenant(tenantId: string, id: string): Promise<PhotoRow | null> {
    const { rows } = await this.db.query<PhotoDbRow>(`SELECT ${photoColumns()} FROM photos WHERE id = $1 AND tenant_id = $2`, [id, tenantId]);
    return rows[0] ? toPhotoRow(rows[0]) : null;
  }

  /** The URL the photo's upload named for its final event (notifyUrl), or null. */
  async notifyUrl(tenantId: string, id: string): Promise<string | null> {
    const { rows } = await this.db.query<{ notify_url: string | null }>(`SELECT notify_url FROM photos WHERE id = $1 AND tenant_id = $2`, [id, tenantId]);
    return rows[0]?.notify_url ?? null;
  }

  /** Newest first, keyset-paginated on (created_at, id); the last row's position is positionOf() text. */
  async list(tenantId: string, opts: { status?: PhotoStatus; limit: number; before?: ListPosition }): Promise<{ items: PhotoRow[]; next: ListPosition | null }> {
    const params: unknown[] = [tenantId];
    let where = 'tenant_id = $1';
    if (opts.status) {
      params.push(opts.status);
      where += ` AND status = $${params.length}`;
    }
    if (opts.before) {
      params.push(opts.before.createdAt, opts.before.id);
      where += ` AND (created_at, id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`;
    }
    params.push(opts.limit + 1);
    const { rows } = await this.db.query<PhotoDbRow & { position: string }>(
      `SELECT ${photoColumns()}, ${positionOf('created_at')} AS position
       FROM photos WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    const page = rows.slice(0, opts.limit);
    const last = page[page.length - 1];
    return { items: page.map(toPhotoRow), next: rows.length > opts.limit && last ? { createdAt: last.position, id: last.id } : null };
  }
}
