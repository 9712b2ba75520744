import { WORKER_ROLES, isStageRole } from '../workers/roles.js';
import { SERVICE_ROLES } from '../workers/service-roles.js';
import { STAGES, type StageName } from '../pipeline/photo-pipeline.js';

/** A wrong command line: the CLI prints the message and exits with code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Accepts role names (frame) or queue names (photopipe.frame), comma-separated. Unset = every role. */
export function parseRoles(value: string | undefined, prefix: string): string[] {
  if (value === undefined) return [...WORKER_ROLES];
  const roles = value
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean)
    .map((r) => (r.startsWith(`${prefix}.`) ? r.slice(prefix.length + 1) : r))
    // A service role's queue names its role (photopipe.batch.download: batch-download).
    .map((r) => SERVICE_ROLES.find((s) => s.queues.includes(r))?.name ?? r);
  for (const r of roles) {
    if (!WORKER_ROLES.includes(r)) throw new UsageError(`unknown role "${r}"; roles: ${WORKER_ROLES.join(', ')}`);
  }
  if (roles.length === 0) throw new UsageError(`no role given; roles: ${WORKER_ROLES.join(', ')}`);
  return [...new Set(roles)];
}

/** A commander argument parser for positive integers that names the option in its error. */
export function positiveIntOption(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer`);
    return n;
  };
}

/** One pipeline stage (role or queue name), for tools that work on a stage's queues (dlq). */
export function parseStage(value: string, prefix: string): StageName {
  const [role] = parseRoles(value, prefix);
  if (!role || !isStageRole(role)) throw new UsageError(`unknown role "${value}"; stages: ${STAGES.join(', ')}`);
  return role;
}
