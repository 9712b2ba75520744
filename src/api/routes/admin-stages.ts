import type { FastifyInstance } from 'fastify';
import { STAGES, type StageName } from '../../shared/config.js';
import { HttpError } from '../../shared/errors.js';
import { StageControl } from '../../pipeline/stage-control.js';
import type { ApiDeps } from '../api-deps.js';

function stageOf(value: string): StageName {
  if (!(STAGES as readonly string[]).includes(value)) throw new HttpError(404, 'not_found', `no stage "${value.slice(0, 40)}"; stages: ${STAGES.join(', ')}`);
  return value as StageName;
}

/** Pausing and resuming a stage fleet-wide (behind ADMIN_API_KEY), and each stage's state and queues. */
export function registerAdminStageRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const control = new StageControl(deps.redis, deps.config.REDIS_KEY_PREFIX);

  app.get('/v1/admin/stages', { config: { auth: 'admin' } }, async () => {
    const [states, queues] = await Promise.all([control.states(), deps.queueStats.all()]);
    const t = deps.broker.topology;
    return {
      stages: Object.fromEntries(
        STAGES.map((s) => {
          const lanes = [t.workQueue(s, 'interactive'), t.workQueue(s, 'bulk')].map((name) => queues.find((q) => q.name === name));
          return [s, { ...states[s], ready: lanes.reduce((n, q) => n + (q?.ready ?? 0), 0), unacked: lanes.some((q) => q?.unacked === null) ? null : lanes.reduce((n, q) => n + (q?.unacked ?? 0), 0), consumers: lanes[0]?.consumers ?? 0 }];
        }),
      ),
    };
  });

  app.post<{ Params: { stage: string } }>('/v1/admin/stages/:stage/pause', { config: { auth: 'admin', bodyless: true } }, async (req) => {
    const stage = stageOf(req.params.stage);
    await control.pause(stage, 'admin-api');
    return { stage, paused: true };
  });

  app.post<{ Params: { stage: string } }>('/v1/admin/stages/:stage/resume', { config: { auth: 'admin', bodyless: true } }, async (req) => {
    const stage = stageOf(req.params.stage);
    await control.resume(stage);
    return { stage, paused: false };
  });
}
