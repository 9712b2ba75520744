import type { StageHandler } from '../../queues/stage-consumer.js';
import { loadForStage, onStageCompleted } from '../flow.js';
import type { WorkerDeps } from '../worker-deps.js';

/**
 * geocode: placeholder until reverse geocoding lands (its own issue). The coordinates are
 * already stored by the exif stage; this stage marks the photo as geocoded with no place, so
 * the queue, its retries and its DLQ exist and a real resolver only replaces this handler.
 */
export function geocodeHandler(deps: WorkerDeps): StageHandler {
  return async (msg, ctx) => {
    const loaded = await loadForStage(deps, 'geocode', msg);
    if (!loaded) return;
    const result = loaded.alreadyDone
      ? await deps.photos.completeStage(msg.photoId, 'geocode')
      : await deps.photos.completeStage(msg.photoId, 'geocode', { fields: { place: null } });
    await onStageCompleted(deps, 'geocode', msg, result, ctx);
  };
}
