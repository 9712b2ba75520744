import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { STAGES } from '../../shared/config.js';
import { HttpError } from '../../shared/errors.js';
import { intParam, optionalEnumParam, queryError } from '../query.js';
import type { ApiDeps } from '../api-deps.js';

/** A replay names a stage or up to 1,000 dead letter ids: a few tens of KB at most. */
export const REPLAY_BODY_MAX_BYTES = 64 * 1024;

const listQuery = z.object({ stage: optionalEnumParam(STAGES), limit: intParam(1, 1000, 50) });
const letterId = z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, 'not a dead letter id');
const replayBody = z.union([
  z.object({ stage: z.enum(STAGES), ids: z.undefined().optional() }),
  z.object({ ids: z.array(letterId).min(1).max(1000), stage: z.enum(STAGES).optional() }),
]);

/** Operator endpoints behind ADMIN_API_KEY (checked in onRequest, see route-auth.ts): dead letters and failure details. */
export function registerAdminDlqRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get('/v1/admin/dlq', { config: { auth: 'admin' } }, async (req) => {
    const q = listQuery.safeParse(req.query);
    if (!q.success) throw queryError('invalid_query', q.error);
    // Counts first, then the listing: browsing holds the letters unacked for a moment, and a
    // queue's depth counts only ready messages, so reading both at once under-counts.
    const counts = await deps.dlq.counts();
    const items = await deps.dlq.list(q.data);
    return { counts, items };
  });

  app.post('/v1/admin/dlq/replay', { config: { auth: 'admin' }, bodyLimit: REPLAY_BODY_MAX_BYTES }, async (req) => {
    const b = replayBody.safeParse(req.body);
    if (!b.success) throw new HttpError(400, 'invalid_body', 'send {"stage": "<stage>"} or {"ids": ["<dead letter id>", ...]}');
    return deps.dlq.replay(b.data);
  });
}
