import type { StageHandler } from '../../queues/stage-consumer.js';
import { renderFramed } from '../../imaging/render.js';
import { renditionStage } from '../rendition-stage.js';
import type { WorkerDeps } from '../worker-deps.js';
import { FrameCache } from './frame-cache.js';

/** frame: the polaroid rendition (the tenant's frame or the default), kept in Redis until upload. */
export function frameHandler(deps: WorkerDeps): StageHandler {
  const frames = new FrameCache(deps.frames);
  return renditionStage(deps, 'frame', async (source, msg, opts) => renderFramed(source, await frames.forTenant(msg.tenantId), opts));
}
