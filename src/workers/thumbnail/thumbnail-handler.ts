import type { StageHandler } from '../../queues/stage-consumer.js';
import { renderThumbnail } from '../../imaging/render.js';
import { loadForStage, onStageCompleted } from '../flow.js';
import { renditionSource } from '../rendition-source.js';
import type { WorkerDeps } from '../worker-deps.js';

/** thumbnail: upright, longest side 320 px, JPEG, kept in Redis until upload. */
export function thumbnailHandler(deps: WorkerDeps): StageHandler {
  return async (msg, ctx) => {
    const loaded = await loadForStage(deps, 'thumbnail', msg);
    if (!loaded) return;
    if (!loaded.alreadyDone) {
      const source = await renditionSource(deps, msg);
      const out = await renderThumbnail(source, {
        maxInputPixels: deps.config.MAX_INPUT_PIXELS,
        signal: ctx.signal,
        timeoutMs: deps.config.stage('thumbnail').timeoutMs,
      });
      await deps.blobs.put(msg.photoId, 'thumbnail', out.data);
    }
    const result = await deps.photos.completeStage(msg.photoId, 'thumbnail');
    await onStageCompleted(deps, 'thumbnail', msg, result, ctx);
  };
}
