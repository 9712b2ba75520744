import { PermanentError } from '../../shared/errors.js';
import { remainingMs } from '../../queues/stage-consumer.js';
import { renderConverted } from '../../imaging/render.js';
import { defineStage } from '../stage-module.js';
import { renditionSource } from '../rendition-source.js';

/**
 * convert (batch photos): the image in its batch's output (format, longest side, quality), upright
 * and without metadata, kept in Redis until store. CPU-bound: run about one process per core.
 */
export default defineStage({
  create: (deps) => ({
    async run({ msg, photo, ctx }) {
      if (!photo.output) throw new PermanentError('invalid_data', `batch photo ${msg.photoId} has no output spec`);
      const source = await renditionSource(deps.blobs, msg.photoId, photo);
      const out = await renderConverted(source, photo.output, { maxInputPixels: deps.config.MAX_INPUT_PIXELS, signal: ctx.signal, timeoutMs: remainingMs(ctx) });
      await deps.blobs.put(msg.photoId, 'converted', out.data);
    },
  }),
});
