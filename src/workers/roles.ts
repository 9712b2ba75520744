import { STAGES, type StageName } from '../pipeline/photo-pipeline.js';
import { SERVICE_ROLE_NAMES } from './service-roles.js';

/** Every worker role: the pipeline's stages, then the service roles. */
export const WORKER_ROLES: readonly string[] = [...STAGES, ...SERVICE_ROLE_NAMES];

export function isStageRole(role: string): role is StageName {
  return (STAGES as readonly string[]).includes(role);
}

/**
 * Roles that only ever do batch work (batch photos' stages, downloads, the dispatcher). A process
 * running nothing else lowers its CPU priority (BULK_ROLE_NICE), so that on shared cores the
 * stages of live uploads get the CPU first: the bulk lane keeps batch work from queueing in front
 * of an upload, the priority keeps it from slowing the upload's stages down.
 */
export const BULK_ONLY_ROLES: readonly string[] = ['convert', 'store', 'batch-download', 'batch-dispatch'];
