import { dbJsonText, dbText } from '../../shared/text.js';

/**
 * Columns a stage writes together with its completion, in the same statement. Each stage builds
 * its own (src/workers/<stage>/), so the completion statement never grows a column per stage.
 */

export type SqlType = 'jsonb' | 'double precision' | 'text' | 'int' | 'bigint' | 'boolean' | 'uuid' | 'timestamptz';

export interface ColumnValue {
  value: unknown;
  type: SqlType;
}

export type StageColumns = Readonly<Record<string, ColumnValue>>;

/**
 * Strings and keys at any depth are made what Postgres accepts (no lone surrogates, no NUL; see
 * shared/text.ts): a stage's values come from files and other services, and one bad character
 * would otherwise fail the whole commit.
 */
export const jsonb = (v: unknown): ColumnValue => ({ value: v === null || v === undefined ? null : (dbJsonText(v) ?? null), type: 'jsonb' });
export const float8 = (v: number | null | undefined): ColumnValue => ({ value: v ?? null, type: 'double precision' });
export const text = (v: string | null | undefined): ColumnValue => ({ value: v === null || v === undefined ? null : dbText(v), type: 'text' });
export const int = (v: number | null | undefined): ColumnValue => ({ value: v ?? null, type: 'int' });
export const bigint = (v: number | string | null | undefined): ColumnValue => ({ value: v ?? null, type: 'bigint' });
export const uuid = (v: string | null | undefined): ColumnValue => ({ value: v ?? null, type: 'uuid' });

/** Columns the stage state machine owns: a stage never writes them itself. */
const RESERVED = new Set(['id', 'tenant_id', 'status', 'stages', 'error', 'stage_errors', 'lane', 'blobs_parked_at', 'blobs_dropped_at', 'created_at', 'updated_at', 'progressed_at', 'completed_at', 'duplicate_of', 'sha256', 'notify_url']);

/** `col = $n::type` assignments for a statement whose parameters so far are `params` (appended to). */
export function assignments(columns: StageColumns | undefined, params: unknown[]): string[] {
  if (!columns) return [];
  return Object.entries(columns).map(([name, c]) => {
    // Column names come from code, never from input; checked anyway since they are put into SQL.
    if (!/^[a-z_][a-z0-9_]*$/.test(name) || RESERVED.has(name)) throw new Error(`a stage cannot write column "${name}"`);
    params.push(c.value);
    return `${name} = $${params.length}::${c.type}`;
  });
}
