import type { StageDeps } from './stage-module.js';

/** What a running service role gives back: how to stop it (stop taking work, finish or hand back within graceMs). */
export interface ServiceRuntime {
  stop(graceMs: number): Promise<void>;
}

/**
 * A worker role that is not a pipeline stage (webhook delivery, batch downloads, the batch
 * dispatcher): src/workers/<role>/<role>-role.ts, default export made with defineServiceRole,
 * and its name in SERVICE_ROLE_NAMES (service-roles.ts). It consumes its own queues (entries of
 * SERVICE_QUEUES in src/queues/topology.ts) with the process's clients.
 */
export interface ServiceRole {
  description: string;
  start(deps: StageDeps): Promise<ServiceRuntime>;
}

export function defineServiceRole(r: ServiceRole): ServiceRole {
  return r;
}
