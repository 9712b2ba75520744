import type { StageHandler } from '../../queues/stage-consumer.js';
import { renderFramed } from '../../imaging/render.js';
import { loadForStage, onStageCompleted } from '../flow.js';
import { renditionSource } from '../rendition-source.js';
import type { WorkerDeps } from '../worker-deps.js';
import { FrameCache } from './frame-cache.js';

/** frame: the polaroid rendition (tenant frame or the default), kept in Redis until upload. */
export function frameHandler(deps: WorkerDeps): StageHandler {
  const frames = new FrameCache(deps.frames);
  return async (msg, ctx) => {
    const loaded = await loadForStage(deps, 'frame', msg);
    if (!loaded) return;
    if (!loaded.alreadyDone) {
      const [source, frame] = await Promise.all([renditionSource(deps, msg), frames.forTenant(msg.tenantId)]);
      const out = await renderFramed(source, frame, {
        maxInputPixels: deps.config.MAX_INPUT_PIXELS,
        signal: ctx.signal,
        timeoutMs: deps.config.stage('frame').timeoutMs,
      });
      await deps.blobs.put(msg.photoId, 'framed', out.data);
    }
    const result = await deps.photos.completeStage(msg.photoId, 'frame');
    await onStageCompleted(deps, 'frame', msg, result, ctx);
  };
}
