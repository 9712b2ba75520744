import type { StageHandler } from '../../queues/stage-consumer.js';
import { renderThumbnail } from '../../imaging/render.js';
import { renditionStage } from '../rendition-stage.js';
import type { WorkerDeps } from '../worker-deps.js';

/** thumbnail: upright, longest side 320 px, JPEG, kept in Redis until upload. */
export function thumbnailHandler(deps: WorkerDeps): StageHandler {
  return renditionStage(deps, 'thumbnail', (source, _msg, opts) => renderThumbnail(source, opts));
}
