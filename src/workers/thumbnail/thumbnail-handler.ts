import { remainingMs } from '../../queues/stage-consumer.js';
import { renderThumbnail } from '../../imaging/render.js';
import { defineStage } from '../stage-module.js';
import { renditionSource } from '../rendition-source.js';

/** thumbnail: upright, longest side 320 px, JPEG, kept in Redis until upload. */
export default defineStage({
  create: (deps) => ({
    async run({ msg, photo, ctx }) {
      const source = await renditionSource(deps.blobs, msg.photoId, photo);
      const out = await renderThumbnail(source, { maxInputPixels: deps.config.MAX_INPUT_PIXELS, signal: ctx.signal, timeoutMs: remainingMs(ctx) });
      await deps.blobs.put(msg.photoId, 'thumbnail', out.data);
    },
  }),
});
