import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { HttpError } from '../../shared/errors.js';
import { DEFAULT_FRAME_SIZE, DEFAULT_FRAME_WINDOW } from '../../imaging/render.js';
import { checkFramePng, FramePngError } from '../../imaging/frame-png.js';
import { intParam, queryError } from '../query.js';
import { tenantOf } from '../route-auth.js';
import type { ApiDeps } from '../api-deps.js';

/** A tenant's own polaroid frame: PUT a PNG body (Content-Type image/png), window via ?left&top&width&height. */
export function registerFrameRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const maxSide = deps.config.FRAME_MAX_SIDE_PX;
  // Each value is within the largest frame, so none can overflow the integer columns it is stored in.
  const windowQuery = z.object({
    left: intParam(0, maxSide - 1, DEFAULT_FRAME_WINDOW.left),
    top: intParam(0, maxSide - 1, DEFAULT_FRAME_WINDOW.top),
    width: intParam(1, maxSide, DEFAULT_FRAME_WINDOW.width),
    height: intParam(1, maxSide, DEFAULT_FRAME_WINDOW.height),
  });

  app.put('/v1/frame', { config: { auth: 'tenant' }, bodyLimit: deps.config.FRAME_MAX_BYTES }, async (req) => {
    const tenantId = tenantOf(req);
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (contentType !== 'image/png' || !Buffer.isBuffer(req.body) || req.body.length === 0) {
      throw new HttpError(415, 'unsupported_media_type', 'send the frame as a PNG body with Content-Type image/png');
    }
    const parsed = windowQuery.safeParse(req.query);
    if (!parsed.success) throw queryError('invalid_window', parsed.error);
    const w = parsed.data;
    let size;
    try {
      // Decoded in full here: a frame that cannot be drawn would fail every later photo of the tenant.
      size = await checkFramePng(req.body, { maxSidePx: maxSide });
    } catch (err) {
      if (!(err instanceof FramePngError)) throw err;
      req.log.info({ problem: err.problem, err: (err.cause as Error | undefined)?.message }, 'frame refused');
      if (err.problem === 'not_png') throw new HttpError(415, 'unsupported_media_type', err.message);
      throw new HttpError(400, err.problem === 'too_large' ? 'frame_too_large' : 'invalid_frame', err.message);
    }
    if (w.left + w.width > size.width || w.top + w.height > size.height) {
      throw new HttpError(400, 'invalid_window', `window ${w.width}x${w.height} at (${w.left},${w.top}) does not fit in the ${size.width}x${size.height} frame`);
    }
    await deps.frames.put(tenantId, { png: req.body, ...size, window: w });
    return { frame: { custom: true, width: size.width, height: size.height, window: w } };
  });

  app.get('/v1/frame', { config: { auth: 'tenant' } }, async (req) => {
    const f = await deps.frames.get(tenantOf(req));
    return f
      ? { frame: { custom: true, width: f.width, height: f.height, window: f.window, updatedAt: f.version } }
      : { frame: { custom: false, ...DEFAULT_FRAME_SIZE, window: DEFAULT_FRAME_WINDOW } };
  });

  app.delete('/v1/frame', { config: { auth: 'tenant', bodyless: true } }, async (req, reply) => {
    await deps.frames.delete(tenantOf(req));
    return reply.code(204).send();
  });
}
