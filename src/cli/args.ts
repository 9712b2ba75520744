import { STAGES, type StageName } from '../shared/config.js';

/** A wrong command line: the CLI prints the message and exits with code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Accepts role names (frame) or queue names (photopipe.frame), comma-separated. Unset = every role. */
export function parseRoles(value: string | undefined, prefix: string): StageName[] {
  if (value === undefined) return [...STAGES];
  const roles = value
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean)
    .map((r) => (r.startsWith(`${prefix}.`) ? r.slice(prefix.length + 1) : r));
  for (const r of roles) {
    if (!(STAGES as readonly string[]).includes(r)) throw new UsageError(`unknown role "${r}"; roles: ${STAGES.join(', ')}`);
  }
  if (roles.length === 0) throw new UsageError(`no role given; roles: ${STAGES.join(', ')}`);
  return [...new Set(roles)] as StageName[];
}

/** A commander argument parser for positive integers that names the option in its error. */
export function positiveIntOption(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer`);
    return n;
  };
}
