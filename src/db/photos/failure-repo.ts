import type { Db } from '../../shared/db.js';
import { positionOf, type PhotoStatus } from './photo-row.js';

export interface FailureGroup {
  stage: string;
  code: string | null;
  count: number;
}

export interface FailedPhoto {
  id: string;
  tenantId: string;
  stage: string;
  code: string | null;
  reason: string;
  errorClass: string | null;
  attempts: number | null;
  failedAt: Date;
  createdAt: Date;
}

interface FailedDbRow {
  id: string;
  tenant_id: string;
  stage: string;
  code: string | null;
  reason: string;
  error_class: string | null;
  attempts: number | null;
  updated_at: Date;
  created_at: Date;
  position: string;
}

export interface FailurePosition {
  failedAt: string;
  id: string;
}

/** What operators see of failures across every tenant (admin API and dashboard). */
export class FailureRepo {
  constructor(private readonly db: Db) {}

  /** Failed photos by stage and error code, the largest groups first. */
  async groups(filter: { stage?: string; code?: string } = {}): Promise<FailureGroup[]> {
    const { rows } = await this.db.query<{ stage: string; code: string | null; count: number }>(
      `SELECT error ->> 'stage' AS stage, error ->> 'code' AS code, count(*)::int AS count FROM photos
       WHERE status = 'failed' AND ($1::text IS NULL OR error ->> 'stage' = $1) AND ($2::text IS NULL OR error ->> 'code' = $2)
       GROUP BY 1, 2 ORDER BY count DESC, stage, code`,
      [filter.stage ?? null, filter.code ?? null],
    );
    return rows;
  }

  /** Failed photos, the latest failure first (keyset on the time of the failure and the id). */
  async list(filter: { stage?: string; code?: string; limit: number; before?: FailurePosition }): Promise<{ items: FailedPhoto[]; next: FailurePosition | null }> {
    const { rows } = await this.db.query<FailedDbRow>(
      `SELECT id, tenant_id, error ->> 'stage' AS stage, error ->> 'code' AS code, error ->> 'reason' AS reason,
              error ->> 'errorClass' AS error_class, (error ->> 'attempts')::int AS attempts, updated_at, created_at,
              ${positionOf('updated_at')} AS position
       FROM photos
       WHERE status = 'failed' AND ($1::text IS NULL OR error ->> 'stage' = $1) AND ($2::text IS NULL OR error ->> 'code' = $2)
         AND ($4::timestamptz IS NULL OR (updated_at, id) < ($4::timestamptz, $5::uuid))
       ORDER BY updated_at DESC, id DESC LIMIT $3`,
      [filter.stage ?? null, filter.code ?? null, filter.limit + 1, filter.before?.failedAt ?? null, filter.before?.id ?? null],
    );
    const page = rows.slice(0, filter.limit);
    const last = page[page.length - 1];
    return {
      items: page.map((r) => ({
        id: r.id,
        tenantId: r.tenant_id,
        stage: r.stage,
        code: r.code,
        reason: r.reason,
        errorClass: r.error_class,
        attempts: r.attempts,
        failedAt: r.updated_at,
        createdAt: r.created_at,
      })),
      next: rows.length > filter.limit && last ? { failedAt: last.position, id: last.id } : null,
    };
  }

  /** Photos by status, every tenant. */
  async countByStatus(): Promise<Record<PhotoStatus, number>> {
    const { rows } = await this.db.query<{ status: PhotoStatus; n: number }>(`SELECT status, count(*)::int AS n FROM photos GROUP BY status`);
    const out: Record<PhotoStatus, number> = { queued: 0, processing: 0, complete: 0, duplicate: 0, failed: 0 };
    for (const r of rows) out[r.status] = r.n;
    return out;
  }
}
