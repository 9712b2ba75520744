import type { Db } from '../shared/db.js';
import type { FrameSpec } from '../imaging/render.js';

interface FrameDbRow {
  png: Buffer;
  width: number;
  height: number;
  window_left: number;
  window_top: number;
  window_width: number;
  window_height: number;
  updated_at: Date;
}

/** A tenant's own polaroid frame (PNG bytes and photo window), kept in Postgres: small, durable, transactional. */
export class FrameRepo {
  constructor(private readonly db: Db) {}

  async put(tenantId: string, f: FrameSpec): Promise<void> {
    await this.db.query(
      `INSERT INTO tenant_frames (tenant_id, png, width, height, window_left, window_top, window_width, window_height)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (tenant_id) DO UPDATE SET png = EXCLUDED.png, width = EXCLUDED.width, height = EXCLUDED.height,
         window_left = EXCLUDED.window_left, window_top = EXCLUDED.window_top, window_width = EXCLUDED.window_width,
         window_height = EXCLUDED.window_height, updated_at = now()`,
      [tenantId, f.png, f.width, f.height, f.window.left, f.window.top, f.window.width, f.window.height],
    );
  }

  async version(tenantId: string): Promise<string | null> {
    const { rows } = await this.db.query<{ updated_at: Date }>(`SELECT updated_at FROM tenant_frames WHERE tenant_id = $1`, [tenantId]);
    return rows[0] ? rows[0].updated_at.toISOString() : null;
  }

  async get(tenantId: string): Promise<(FrameSpec & { version: string }) | null> {
    const { rows } = await this.db.query<FrameDbRow>(
      `SELECT png, width, height, window_left, window_top, window_width, window_height, updated_at FROM tenant_frames WHERE tenant_id = $1`,
      [tenantId],
    );
    const r = rows[0];
    if (!r) return null;
    return {
      png: r.png,
      width: r.width,
      height: r.height,
      window: { left: r.window_left, top: r.window_top, width: r.window_width, height: r.window_height },
      version: r.updated_at.toISOString(),
    };
  }

  async delete(tenantId: string): Promise<boolean> {
    const { rowCount } = await this.db.query(`DELETE FROM tenant_frames WHERE tenant_id = $1`, [tenantId]);
    return rowCount === 1;
  }
}
