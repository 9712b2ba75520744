import sharp from 'sharp';
import { PermanentError } from '../../shared/errors.js';
import { CONTENT_TYPES, EXTENSIONS, sniffImageFormat } from '../../imaging/sniff.js';
import type { VariantRow } from '../../db/photos/variant-repo.js';
import { defineStage } from '../stage-module.js';

const PUBLIC_CACHE = 'public, max-age=31536000, immutable';

/** Object keys are fixed per photo and variant, so a second run overwrites rather than adds. */
export function objectKey(tenantId: string, photoId: string, name: string): string {
  return `${tenantId}/${photoId}/${name}`;
}

/**
 * upload: the original (private, bytes untouched, metadata intact) and the two renditions
 * (public, encoded without metadata so GPS cannot leak) to S3, then one row per variant.
 */
export default defineStage({
  create: (deps) => ({
    async run({ msg, photo, ctx }) {
      const [raw, framed, thumbnail] = await Promise.all([
        deps.blobs.get(msg.photoId, 'raw'),
        deps.blobs.get(msg.photoId, 'framed'),
        deps.blobs.get(msg.photoId, 'thumbnail'),
      ]);
      const format = sniffImageFormat(raw.subarray(0, 64));
      if (!format) throw new PermanentError('unsupported_image', 'original is not a supported image');
      const [framedInfo, thumbInfo] = await Promise.all([sharp(framed).metadata(), sharp(thumbnail).metadata()]);
      const variants: (VariantRow & { body: Buffer; visibility: 'public' | 'private' })[] = [
        {
          kind: 'original',
          s3Key: objectKey(msg.tenantId, msg.photoId, `original.${EXTENSIONS[format]}`),
          url: null,
          width: photo.file?.width ?? 0,
          height: photo.file?.height ?? 0,
          bytes: raw.length,
          contentType: CONTENT_TYPES[format],
          body: raw,
          visibility: 'private',
        },
        {
          kind: 'framed',
          s3Key: objectKey(msg.tenantId, msg.photoId, 'framed.jpg'),
          url: null,
          width: framedInfo.width ?? 0,
          height: framedInfo.height ?? 0,
          bytes: framed.length,
          contentType: 'image/jpeg',
          body: framed,
          visibility: 'public',
        },
        {
          kind: 'thumbnail',
          s3Key: objectKey(msg.tenantId, msg.photoId, 'thumbnail.jpg'),
          url: null,
          width: thumbInfo.width ?? 0,
          height: thumbInfo.height ?? 0,
          bytes: thumbnail.length,
          contentType: 'image/jpeg',
          body: thumbnail,
          visibility: 'public',
        },
      ];
      await Promise.all(
        variants.map((v) =>
          deps.storage.put(
            { key: v.s3Key, body: v.body, contentType: v.contentType, visibility: v.visibility, cacheControl: v.visibility === 'public' ? PUBLIC_CACHE : 'private, no-store' },
            ctx.signal,
          ),
        ),
      );
      await deps.photos.variants.upsert(
        msg,
        variants.map(({ body: _b, visibility, ...v }) => ({ ...v, url: visibility === 'public' ? deps.storage.publicUrl(v.s3Key) : null })),
      );
    },
  }),
});
