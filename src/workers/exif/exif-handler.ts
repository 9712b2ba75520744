import type { StageHandler } from '../../queues/stage-consumer.js';
import { extractExif } from '../../imaging/exif.js';
import { finishStage, loadForStage } from '../flow.js';
import type { WorkerDeps } from '../worker-deps.js';

/** exif: everything exifr reads, stored as JSON, plus normalised fields; photos with GPS go on to geocoding. */
export function exifHandler(deps: WorkerDeps): StageHandler {
  return async (msg, ctx) => {
    const loaded = await loadForStage(deps, 'exif', msg);
    if (!loaded) return;
    if (loaded.alreadyDone) {
      await finishStage(deps, 'exif', msg, ctx);
      return;
    }
    const raw = await deps.blobs.getByKey(msg.rawKey, msg.photoId);
    const { exif, raw: exifRaw } = await extractExif(raw);
    await finishStage(deps, 'exif', msg, ctx, {
      setStages: { geocode: exif.gps ? 'pending' : 'skipped' },
      fields: { exif, exifRaw, gps: exif.gps },
    });
  };
}
