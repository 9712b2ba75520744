import { remainingMs } from '../../queues/stage-consumer.js';
import { renderFramed } from '../../imaging/render.js';
import { defineStage } from '../stage-module.js';
import { renditionSource } from '../rendition-source.js';
import { FrameCache } from './frame-cache.js';

/** frame: the polaroid rendition (the tenant's frame or the default), kept in Redis until upload. */
export default defineStage({
  create: (deps) => {
    const frames = new FrameCache(deps.frames);
    return {
      async run({ msg, photo, ctx }) {
        const source = await renditionSource(deps.blobs, msg.photoId, photo);
        const out = await renderFramed(source, await frames.forTenant(msg.tenantId), {
          maxInputPixels: deps.config.MAX_INPUT_PIXELS,
          signal: ctx.signal,
          timeoutMs: remainingMs(ctx),
        });
        await deps.blobs.put(msg.photoId, 'framed', out.data);
      },
    };
  },
});
