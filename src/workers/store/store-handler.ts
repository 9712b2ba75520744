import sharp from 'sharp';
import { PermanentError } from '../../shared/errors.js';
import { CONVERTED_CONTENT_TYPES, CONVERTED_EXTENSIONS } from '../../imaging/render.js';
import { defineStage } from '../stage-module.js';
import { objectKey } from '../upload/upload-handler.js';

const PUBLIC_CACHE = 'public, max-age=31536000, immutable';

/**
 * store (batch photos): the converted image to S3, public (its URL is what the customer's batch
 * API fetches), at a key fixed per photo so a second run overwrites; then its variant row with
 * the public URL. A duplicate never gets here: its batch item takes the URL of the photo it
 * duplicates.
 */
export default defineStage({
  create: (deps) => ({
    async run({ msg, photo, ctx }) {
      if (!photo.output) throw new PermanentError('invalid_data', `batch photo ${msg.photoId} has no output spec`);
      const bytes = await deps.blobs.get(msg.photoId, 'converted');
      const info = await sharp(bytes).metadata();
      const key = objectKey(msg.tenantId, msg.photoId, `batch.${CONVERTED_EXTENSIONS[photo.output.format]}`);
      const contentType = CONVERTED_CONTENT_TYPES[photo.output.format];
      await deps.storage.put({ key, body: bytes, contentType, visibility: 'public', cacheControl: PUBLIC_CACHE }, ctx.signal);
      await deps.photos.variants.upsert(msg, [
        { kind: 'converted', s3Key: key, url: deps.storage.publicUrl(key), width: info.width ?? 0, height: info.height ?? 0, bytes: bytes.length, contentType },
      ]);
    },
  }),
});
