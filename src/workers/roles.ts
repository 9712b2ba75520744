import { STAGES, type StageName } from '../pipeline/photo-pipeline.js';
import { SERVICE_ROLE_NAMES } from './service-roles.js';

/** Every worker role: the pipeline's stages, then the service roles. */
export const WORKER_ROLES: readonly string[] = [...STAGES, ...SERVICE_ROLE_NAMES];

export function isStageRole(role: string): role is StageName {
  return (STAGES as readonly string[]).includes(role);
}
