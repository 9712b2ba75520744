import type { StageHandler } from '../../queues/stage-consumer.js';
import { finishStage, loadForStage } from '../flow.js';
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
    await finishStage(deps, 'geocode', msg, ctx, loaded.alreadyDone ? {} : { fields: { place: null } });
  };
}
