import { parseArgs, type ParseArgsConfig } from 'node:util';
import { STAGES, type StageName } from '../shared/config.js';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Accepts role names (frame) or queue names (photopipe.frame), comma-separated. */
export function parseRoles(value: string | undefined, prefix: string): StageName[] {
  if (!value) return [...STAGES];
  const roles = value.split(',').map((r) => r.trim()).filter(Boolean).map((r) => (r.startsWith(`${prefix}.`) ? r.slice(prefix.length + 1) : r));
  for (const r of roles) {
    if (!(STAGES as readonly string[]).includes(r)) throw new UsageError(`unknown role "${r}"; roles: ${STAGES.join(', ')}`);
  }
  if (roles.length === 0) throw new UsageError(`no role given; roles: ${STAGES.join(', ')}`);
  return [...new Set(roles)] as StageName[];
}

export function positiveInt(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer`);
  return n;
}
