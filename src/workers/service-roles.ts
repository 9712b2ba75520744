import type { ServiceRole } from './service-role.js';
import { BATCH_DISPATCH, BATCH_DOWNLOAD, BATCH_PHOTOS } from '../queues/batch-messages.js';

/**
 * Worker roles besides the pipeline's stages, each run like a stage role (`photopipe worker --role
 * <name>`, one process each under `npm start`, a Deployment each on Kubernetes). Their code is
 * src/workers/<name>/<name>-role.ts (default export).
 */
export const SERVICE_ROLES: readonly { name: string; queues: readonly string[]; description: string }[] = [
  { name: 'webhook', queues: ['webhook'], description: "delivers signed photo.final events to each tenant's webhook, with retries" },
  { name: 'batch-download', queues: [BATCH_DOWNLOAD], description: 'downloads batch URLs (SSRF-guarded) into the pipeline, bulk lane' },
  { name: 'batch-dispatch', queues: [BATCH_DISPATCH, BATCH_PHOTOS], description: "hands ready batch images to each customer's batch API, one call in flight per customer" },
];
export const SERVICE_ROLE_NAMES: readonly string[] = SERVICE_ROLES.map((r) => r.name);

export async function loadServiceRole(name: string): Promise<ServiceRole> {
  const path = `./${name}/${name}-role.js`;
  let mod: { default?: ServiceRole };
  try {
    mod = (await import(path)) as { default?: ServiceRole };
  } catch (err) {
    throw new Error(`role "${name}": cannot load ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!mod.default || typeof mod.default.start !== 'function') throw new Error(`role "${name}": ${path} has no default export made with defineServiceRole()`);
  return mod.default;
}
