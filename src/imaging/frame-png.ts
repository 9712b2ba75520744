import sharp from 'sharp';

export type FramePngProblem = 'not_png' | 'too_large' | 'corrupt';

/** Why a frame PNG was refused; `message` is our own wording, fit for the tenant. */
export class FramePngError extends Error {
  override readonly name = 'FramePngError';
  constructor(
    readonly problem: FramePngProblem,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface FramePngLimits {
  /** Largest width and height. */
  maxSidePx: number;
  /** libvips gives up past this (a frame within the limits decodes in well under a second). */
  timeoutSeconds?: number;
}

/**
 * Checks a tenant's frame PNG before it is stored: the signature, then the header's dimensions
 * against the limit (before any pixel is decoded, so a PNG "bomb" with huge declared dimensions
 * costs nothing), then a full decode of every pixel. A header check alone let a PNG with a valid
 * header and corrupt or truncated image data through, and every later photo of that tenant then
 * failed in the frame stage. The decode runs libvips' statistics over the image, which reads
 * every row once without holding the decoded image in memory.
 */
export async function checkFramePng(png: Buffer, limits: FramePngLimits): Promise<{ width: number; height: number }> {
  if (png.length < PNG_SIGNATURE.length + 25 || !png.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE)) {
    throw new FramePngError('not_png', 'the frame is not a PNG image');
  }
  let width: number;
  let height: number;
  try {
    const m = await sharp(png, { limitInputPixels: false }).metadata();
    if (m.format !== 'png' || !m.width || !m.height) throw new Error(`format ${m.format}`);
    width = m.width;
    height = m.height;
  } catch (err) {
    throw new FramePngError('corrupt', 'the frame PNG has no readable header', { cause: err });
  }
  if (width > limits.maxSidePx || height > limits.maxSidePx) {
    throw new FramePngError('too_large', `the frame is ${width}x${height}, above the limit of ${limits.maxSidePx}x${limits.maxSidePx} pixels`);
  }
  try {
    await sharp(png, { limitInputPixels: limits.maxSidePx * limits.maxSidePx, failOn: 'warning', sequentialRead: true })
      .timeout({ seconds: limits.timeoutSeconds ?? 10 })
      .stats();
  } catch (err) {
    throw new FramePngError('corrupt', 'the frame PNG is corrupt or truncated (its image data does not decode)', { cause: err });
  }
  return { width, height };
}
