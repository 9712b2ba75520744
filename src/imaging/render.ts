import sharp, { type Sharp, type SharpOptions } from 'sharp';
import { PermanentError, PipelineError, StageTimeoutError } from '../shared/errors.js';
import type { RawImage } from './heic.js';

// Workers see each image once: libvips' operation cache would only hold memory.
sharp.cache(false);

export interface FrameSpec {
  /** A plain white frame: rendered by padding the photo, with no PNG to decode and composite. */
  plainWhite?: boolean;
  png: Buffer;
  width: number;
  height: number;
  window: { left: number; top: number; width: number; height: number };
}

export interface Rendition {
  data: Buffer;
  width: number;
  height: number;
  contentType: 'image/jpeg';
}

export interface RenderOptions {
  maxInputPixels: number;
  signal: AbortSignal;
  /** Remaining time for this message; libvips gives up by itself past it. */
  timeoutMs: number;
}

/** What a stage decodes: the uploaded bytes, or pixels a non-sharp decoder (HEIC) produced. */
export type ImageSource = Buffer | RawImage;

export const DEFAULT_FRAME_SIZE = { width: 612, height: 600 } as const;
export const DEFAULT_FRAME_WINDOW = { left: 13, top: 13, width: 586, height: 497 } as const;

/**
 * Rendition encoders. Huffman table optimisation (sharp's default) doubled the encode time of a
 * 612x600 frame for 1-2 % smaller files (measured over the fixture photos), so it is off; 4:2:0
 * chroma at quality 85 made the frames 28 % smaller than 4:4:4 at 88, with no visible loss at
 * web sizes.
 */
const FRAMED_JPEG = { quality: 85, chromaSubsampling: '4:2:0', optimiseCoding: false } as const;
const THUMBNAIL_JPEG = { quality: 82, chromaSubsampling: '4:2:0', optimiseCoding: false } as const;

let defaultFrame: Promise<FrameSpec> | undefined;

/** The built-in polaroid: 612x600 white with the photo window at (13,13) 586x497. Generated, not shipped. */
export function getDefaultFrame(): Promise<FrameSpec> {
  defaultFrame ??= sharp({ create: { ...DEFAULT_FRAME_SIZE, channels: 3, background: '#ffffff' } })
    .png()
    .toBuffer()
    .then((png) => ({ plainWhite: true, png, ...DEFAULT_FRAME_SIZE, window: { ...DEFAULT_FRAME_WINDOW } }));
  return defaultFrame;
}

function open(source: ImageSource, opts: RenderOptions): Sharp {
  const base: SharpOptions = { limitInputPixels: opts.maxInputPixels, failOn: 'error' };
  const img = Buffer.isBuffer(source)
    ? sharp(source, base)
    : sharp(source.data, { ...base, raw: { width: source.width, height: source.height, channels: source.channels } });
  return img.timeout({ seconds: Math.max(1, Math.ceil(opts.timeoutMs / 1000)) });
}

/** True when the image's header declares more pixels than the limit (read only on the error path). */
async function overPixelLimit(source: ImageSource | undefined, maxInputPixels: number): Promise<boolean> {
  if (!source) return false;
  if (!Buffer.isBuffer(source)) return source.width * source.height > maxInputPixels;
  try {
    const m = await sharp(source, { limitInputPixels: false }).metadata();
    return (m.width ?? 0) * (m.height ?? 0) > maxInputPixels;
  } catch {
    return false;
  }
}

const SHARP_TIMEOUT = /^timeout: \d+% complete/;

/**
 * Maps libvips failures to typed errors: past the deadline it is a timeout; an image above the
 * pixel limit (a decompression bomb that reached a render stage) is image_too_large, as at
 * ingest; anything else means the image itself is bad.
 */
async function guarded<T>(opts: RenderOptions, what: string, fn: () => Promise<T>, source?: ImageSource): Promise<T> {
  if (opts.signal.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new StageTimeoutError(what, opts.timeoutMs);
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PipelineError) throw err;
    if (opts.signal.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new StageTimeoutError(what, opts.timeoutMs);
    // sharp's own time limit (set from the handler's remaining time) reports itself only through
    // libvips' error text, "timeout: N% complete": an overrun, not a bad image.
    if (SHARP_TIMEOUT.test((err as Error).message)) throw new StageTimeoutError(what, opts.timeoutMs);
    if (await overPixelLimit(source, opts.maxInputPixels)) {
      throw new PermanentError('image_too_large', `image is above the ${(opts.maxInputPixels / 1e6).toFixed(1)} MP pixel limit (${what})`, { cause: err });
    }
    // libvips' own message is often precise ("premature end of data segment") but sometimes lost
    // to "Unknown error" when several images fail at once; the reason stays meaningful either way.
    throw new PermanentError('corrupt_image', `cannot decode image (${what}): corrupt or truncated image data (${(err as Error).message.split('\n')[0]})`, { cause: err });
  }
}

/**
 * Polaroid rendition: upright by EXIF orientation, cover-cropped to the frame window without
 * distortion, composited onto the frame at the window position.
 */
export function renderFramed(source: ImageSource, frame: FrameSpec, opts: RenderOptions): Promise<Rendition> {
  return guarded(opts, 'frame', async () => {
    const { window } = frame;
    const photo = open(source, opts).rotate().resize(window.width, window.height, { fit: 'cover', position: 'centre' });
    if (frame.plainWhite) {
      // The default polaroid is white around the window: padding the resized photo in the same
      // pipeline gives the same pixels as compositing onto it, without a second image.
      const data = await photo
        .flatten({ background: '#ffffff' })
        .extend({
          top: window.top,
          left: window.left,
          bottom: frame.height - window.top - window.height,
          right: frame.width - window.left - window.width,
          background: '#ffffff',
        })
        .jpeg(FRAMED_JPEG)
        .toBuffer();
      return { data, width: frame.width, height: frame.height, contentType: 'image/jpeg' as const };
    }
    const pixels = await photo.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const data = await sharp(frame.png)
      .composite([{ input: pixels.data, raw: { width: pixels.info.width, height: pixels.info.height, channels: pixels.info.channels }, left: window.left, top: window.top }])
      .flatten({ background: '#ffffff' })
      .jpeg(FRAMED_JPEG)
      .toBuffer();
    return { data, width: frame.width, height: frame.height, contentType: 'image/jpeg' as const };
  }, source);
}

/** Thumbnail: upright, longest side 320 px, JPEG, no metadata. */
export function renderThumbnail(source: ImageSource, opts: RenderOptions, longestSide = 320): Promise<Rendition> {
  return guarded(opts, 'thumbnail', async () => {
    const { data, info } = await open(source, opts)
      .rotate()
      .resize(longestSide, longestSide, { fit: 'inside' })
      .flatten({ background: '#ffffff' })
      .jpeg(THUMBNAIL_JPEG)
      .toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, contentType: 'image/jpeg' as const };
  }, source);
}

/**
 * A decoded HEIC is kept as a working copy (JPEG, longest side <= 2048) so frame and thumbnail
 * need not run the slow wasm decoder again. Orientation is already applied by libheif.
 */
export function encodeWorkingCopy(raw: RawImage, opts: RenderOptions): Promise<Buffer> {
  return guarded(opts, 'working copy', () =>
    open(raw, opts).resize(2048, 2048, { fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 92, optimiseCoding: false }).toBuffer(),
    raw,
  );
}

export interface ImageInfo {
  format: string;
  width: number;
  height: number;
  orientation: number | undefined;
  /** HEIF images coded with HEVC need the wasm decoder; AVIF (AV1) is decoded by sharp. */
  needsHeicDecoder: boolean;
}

/** Reads the header only (no pixel decode). */
export function readImageInfo(input: Buffer, opts: RenderOptions): Promise<ImageInfo> {
  return guarded(opts, 'header', async () => {
    // The pixel limit is checked by the caller with a clearer error; the header read must not trip it.
    const m = await sharp(input, { limitInputPixels: false }).metadata();
    if (!m.format || !m.width || !m.height) throw new PermanentError('unsupported_image', 'image has no readable dimensions');
    return {
      format: m.format,
      width: m.width,
      height: m.height,
      orientation: m.orientation,
      needsHeicDecoder: m.format === 'heif' && m.compression === 'hevc',
    };
  });
}

/** A batch's output (src/db/photos/photo-row.ts OutputSpec), as sharp encodes it. */
export interface ConvertSpec {
  format: 'jpeg' | 'webp' | 'png' | 'avif';
  maxSize: number;
  quality: number;
}

export const CONVERTED_CONTENT_TYPES: Record<ConvertSpec['format'], string> = { jpeg: 'image/jpeg', webp: 'image/webp', png: 'image/png', avif: 'image/avif' };
export const CONVERTED_EXTENSIONS: Record<ConvertSpec['format'], string> = { jpeg: 'jpg', webp: 'webp', png: 'png', avif: 'avif' };

/**
 * A batch image in its batch's output: upright, within maxSize on its longest side (never
 * enlarged), in the format and quality asked, with no metadata (sharp drops EXIF, GPS included,
 * unless told to keep it: the result is public). JPEG has no alpha, so transparency becomes white.
 */
export function renderConverted(source: ImageSource, spec: ConvertSpec, opts: RenderOptions): Promise<Rendition & { contentType: string }> {
  return guarded(opts, 'convert', async () => {
    let img = open(source, opts).rotate().resize(spec.maxSize, spec.maxSize, { fit: 'inside', withoutEnlargement: true });
    if (spec.format === 'jpeg') img = img.flatten({ background: '#ffffff' }).jpeg({ quality: spec.quality, chromaSubsampling: '4:2:0', optimiseCoding: false });
    else if (spec.format === 'webp') img = img.webp({ quality: spec.quality });
    else if (spec.format === 'avif') img = img.avif({ quality: spec.quality });
    else img = img.png({ quality: spec.quality, compressionLevel: 6 });
    const { data, info } = await img.toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, contentType: CONVERTED_CONTENT_TYPES[spec.format] } as Rendition & { contentType: string };
  }, source);
}
