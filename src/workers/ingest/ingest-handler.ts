import { PermanentError } from '../../shared/errors.js';
import { remainingMs } from '../../queues/stage-consumer.js';
import { sniffImageFormat } from '../../imaging/sniff.js';
import { encodeWorkingCopy, readImageInfo } from '../../imaging/render.js';
import { decodeHeic } from '../../imaging/heic.js';
import { sha256Hex } from '../../shared/sha256.js';
import { defineStage } from '../stage-module.js';

/**
 * ingest: hash, dedupe against Postgres, file info. HEVC-coded HEIC is decoded here once into a
 * working copy so frame and thumbnail do not each pay for the slow decoder.
 */
export default defineStage({
  create: (deps) => ({
    async run({ msg, ctx }) {
      const raw = await deps.blobs.get(msg.photoId, 'raw');
      if (raw.length === 0) throw new PermanentError('empty_file', 'the upload is empty');
      const sniffed = sniffImageFormat(raw.subarray(0, 64));
      if (!sniffed) throw new PermanentError('unsupported_image', 'not a supported image format');

      const renderOpts = { maxInputPixels: deps.config.MAX_INPUT_PIXELS, signal: ctx.signal, timeoutMs: remainingMs(ctx) };
      const [sha256, info] = await Promise.all([sha256Hex(raw), readImageInfo(raw, renderOpts)]);
      const pixels = info.width * info.height;
      if (pixels > deps.config.MAX_INPUT_PIXELS) {
        throw new PermanentError(
          'image_too_large',
          `image is ${info.width}x${info.height} (${(pixels / 1e6).toFixed(1)} MP), above the ${(deps.config.MAX_INPUT_PIXELS / 1e6).toFixed(1)} MP limit`,
        );
      }
      const file = { format: info.format, width: info.width, height: info.height, bytes: raw.length, ...(info.needsHeicDecoder ? { workingCopy: true } : {}) };
      const claimed = await deps.photos.claims.claim(msg, sha256, file);
      if (!claimed) throw new PermanentError('unknown_photo', `photo ${msg.photoId} of tenant ${msg.tenantId} disappeared`);
      const { duplicateOf } = claimed;
      if (duplicateOf) {
        ctx.log.info({ duplicateOf }, 'content already owned by another photo');
        return { final: 'duplicate' };
      }
      if (info.needsHeicDecoder && !(await deps.blobs.exists(msg.photoId, 'work'))) {
        const decoded = await decodeHeic(raw, ctx.signal);
        await deps.blobs.put(msg.photoId, 'work', await encodeWorkingCopy(decoded, renderOpts));
      }
    },
  }),
});
