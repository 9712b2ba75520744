import { remainingMs, type StageHandler } from '../queues/stage-consumer.js';
import type { StageMessage } from '../queues/messages.js';
import type { Rendition, RenderOptions } from '../imaging/render.js';
import { finishStage, loadForStage } from './flow.js';
import type { WorkerDeps } from './worker-deps.js';
import type { StageView } from '../db/photo-repo.js';

/** The bytes a rendition is made from: the decoded working copy when ingest made one (HEIC), else the upload. */
function renditionSource(deps: WorkerDeps, msg: StageMessage, photo: StageView): Promise<Buffer> {
  return photo.file?.workingCopy ? deps.blobs.get(msg.photoId, 'work') : deps.blobs.getByKey(msg.rawKey, msg.photoId);
}

/**
 * A stage that renders one rendition of the photo into Redis, where upload picks it up. Frame
 * and thumbnail differ only in what they render.
 */
export function renditionStage(
  deps: WorkerDeps,
  stage: 'frame' | 'thumbnail',
  render: (source: Buffer, msg: StageMessage, opts: RenderOptions) => Promise<Rendition>,
): StageHandler {
  return async (msg, ctx) => {
    const loaded = await loadForStage(deps, stage, msg);
    if (!loaded) return;
    if (!loaded.alreadyDone) {
      const out = await render(await renditionSource(deps, msg, loaded.photo), msg, {
        maxInputPixels: deps.config.MAX_INPUT_PIXELS,
        signal: ctx.signal,
        timeoutMs: remainingMs(ctx),
      });
      await deps.blobs.put(msg.photoId, stage === 'frame' ? 'framed' : 'thumbnail', out.data);
    }
    await finishStage(deps, stage, msg, ctx);
  };
}
