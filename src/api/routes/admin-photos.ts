import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { STAGES } from '../../shared/config.js';
import { HttpError } from '../../shared/errors.js';
import { intParam, isListPosition, optionalEnumParam, queryError, uuidParam } from '../query.js';
import type { ApiDeps } from '../api-deps.js';

const code = z.string().min(1).max(100).regex(/^[a-z0-9_]+$/, 'an error code');
const listQuery = z.object({
  status: z.preprocess((v) => (v === '' || v === undefined ? 'failed' : v), z.literal('failed')),
  stage: optionalEnumParam(STAGES),
  code: z.preprocess((v) => (v === '' ? undefined : v), code.optional()),
  limit: intParam(1, 200, 50),
  cursor: z.preprocess((v) => (v === '' ? undefined : v), z.string().max(200).optional()),
});
const replayBody = z.union([
  z.object({ photoIds: z.array(z.uuid()).min(1).max(1000) }).strict(),
  z.object({ stage: z.enum(STAGES), code: code.optional() }).strict(),
]);

function encodeCursor(c: { failedAt: string; id: string }): string {
  return Buffer.from(JSON.stringify([c.failedAt, c.id])).toString('base64url');
}
function decodeCursor(cursor: string): { failedAt: string; id: string } {
  const invalid = new HttpError(400, 'invalid_cursor', 'cursor is not one this API returned');
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && isListPosition(v[0]) && typeof v[1] === 'string' && uuidParam.safeParse(v[1]).success) return { failedAt: v[0], id: v[1] };
  } catch {
    // fall through
  }
  throw invalid;
}

/**
 * Failed-photo inspection for operators (behind ADMIN_API_KEY): failures grouped by stage and
 * error code with counts, the photos of a group, one photo with its recorded failure and its dead
 * letter's headers, and replay of one photo, several, a group (stage + code) or a whole stage.
 */
export function registerAdminPhotoRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get('/v1/admin/photos', { config: { auth: 'admin' } }, async (req) => {
    const q = listQuery.safeParse(req.query);
    if (!q.success) throw queryError('invalid_query', q.error);
    const { stage, code: c, limit, cursor } = q.data;
    const [groups, page] = await Promise.all([
      deps.photos.failures.groups({ stage, code: c }),
      deps.photos.failures.list({ stage, code: c, limit, before: cursor ? decodeCursor(cursor) : undefined }),
    ]);
    return {
      groups,
      items: page.items.map((f) => ({ ...f, failedAt: f.failedAt.toISOString(), createdAt: f.createdAt.toISOString() })),
      nextCursor: page.next ? encodeCursor(page.next) : null,
    };
  });

  // A photo's failure as recorded, with the operator's detail that tenants are not shown, and its dead letters.
  app.get<{ Params: { id: string } }>('/v1/admin/photos/:id', { config: { auth: 'admin' } }, async (req) => {
    if (!uuidParam.safeParse(req.params.id).success) throw new HttpError(404, 'not_found', 'no such photo');
    const row = await deps.photos.reads.get(req.params.id);
    if (!row) throw new HttpError(404, 'not_found', 'no such photo');
    const letters = row.status === 'failed' || row.stageErrors ? await deps.dlq.list({ photoIds: [row.id], limit: 20 }).catch(() => null) : [];
    return {
      id: row.id,
      tenantId: row.tenantId,
      status: row.status,
      stages: row.stages,
      error: row.error,
      stageErrors: row.stageErrors,
      deadLetters: letters?.map((l) => ({
        id: l.id,
        stage: l.stage,
        code: l.code,
        reason: l.reason,
        attempts: l.attempts,
        firstFailureAt: l.firstFailureAt,
        lastFailureAt: l.lastFailureAt,
        deadLetteredAt: l.deadLetteredAt,
        headers: l.headers,
      })) ?? null,
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
    };
  });

  app.post('/v1/admin/photos/replay', { config: { auth: 'admin' }, bodyLimit: 64 * 1024 }, async (req) => {
    const b = replayBody.safeParse(req.body);
    if (!b.success) throw new HttpError(400, 'invalid_body', 'send {"photoIds": ["<photo id>", ...]} or {"stage": "<stage>", "code"?: "<error code>"}');
    return deps.dlq.replay(b.data);
  });
}
