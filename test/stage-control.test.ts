import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { freePort, Stack, waitFor, type Proc } from './helpers/stack.js';
import { WORKER_ROLES } from '../src/workers/roles.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'photopipe.js');
const MGMT = 'http://127.0.0.1:15672/api';
const AUTH = `Basic ${Buffer.from('guest:guest').toString('base64')}`;

async function mgmt(queue: string): Promise<{ consumers: number; messages_ready: number }> {
  const res = await fetch(`${MGMT}/queues/%2F/${encodeURIComponent(queue)}`, { headers: { authorization: AUTH } });
  return (await res.json()) as { consumers: number; messages_ready: number };
}

function cli(stack: Stack, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...stack.env }, timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    ),
  );
}

/**
 * Pausing one stage fleet-wide: its consumers go away in every process (messages wait ready in the
 * queue, as the management UI shows), a worker restarted meanwhile stays paused, resume drains the
 * queue; the same from the admin API.
 */
describe('pausing a stage fleet-wide', () => {
  let stack: Stack;
  let workers: Proc;
  const admin = `admin-${randomBytes(12).toString('hex')}`;

  before(async () => {
    stack = await Stack.start({ workers: 'none', api: false });
    const port = await freePort();
    stack.apiUrl = `http://127.0.0.1:${port}`;
    await stack.startApi({ PORT: String(port), ADMIN_API_KEY: admin });
    workers = await stack.startWorkers([...WORKER_ROLES]);
  });

  after(async () => {
    await stack?.stop();
  });

  it('pause leaves the messages ready with zero consumers, survives a worker restart, and resume drains them', async () => {
    const paused = await cli(stack, ['stage', 'pause', 'frame']);
    assert.equal(paused.code, 0, paused.stderr);
    assert.deepEqual(JSON.parse(paused.stdout), { stage: 'frame', paused: true });
    await waitFor('no consumer on the frame queues', async () => (await stack.queueStats(stack.queue('frame'))).consumerCount === 0 && (await stack.queueStats(`${stack.config.AMQP_PREFIX}.bulk.frame`)).consumerCount === 0, 15_000);

    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0012.jpg'), `paused-${i}`)));
    await waitFor('3 frame messages ready, as the management API shows', async () => {
      const q = await mgmt(stack.queue('frame'));
      return q.messages_ready === 3 && q.consumers === 0;
    }, 30_000, 500);
    assert.equal((await stack.queueStats(stack.queue('thumbnail'))).consumerCount, 1, 'other stages keep consuming');

    // A worker that restarts while the stage is paused stays paused.
    await workers.stop();
    workers = stack.spawnCli('worker-restarted', ['worker', '--role', WORKER_ROLES.join(',')]);
    await stack.waitForConsumers(['ingest', 'exif', 'thumbnail', 'upload'], 1);
    await new Promise((r) => setTimeout(r, 2_000));
    assert.equal((await stack.queueStats(stack.queue('frame'))).consumerCount, 0, 'still no frame consumer after the restart');
    assert.equal((await stack.queueStats(stack.queue('frame'))).messageCount, 3);
    const states = await fetch(`${stack.apiUrl}/v1/admin/stages`, { headers: { authorization: `Bearer ${admin}` } });
    const body = (await states.json()) as { stages: Record<string, { paused: boolean; ready: number }> };
    assert.equal(body.stages.frame?.paused, true);
    assert.equal(body.stages.exif?.paused, false);

    const resumed = await cli(stack, ['stage', 'resume', 'frame']);
    assert.equal(resumed.code, 0, resumed.stderr);
    const drained = await cli(stack, ['stage', 'drain', 'frame', '--timeout', '60']);
    assert.equal(drained.code, 0, drained.stderr);
    assert.deepEqual(JSON.parse(drained.stdout), { stage: 'frame', drained: true });
    assert.deepEqual([...new Set((await stack.waitAllFinal(ids, 60_000)).values())], ['complete']);
  });

  it('pauses and resumes from the admin API too', async () => {
    const call = (path: string) => fetch(`${stack.apiUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
    assert.equal((await call('/v1/admin/stages/thumbnail/pause')).status, 200);
    await waitFor('no thumbnail consumer', async () => (await stack.queueStats(stack.queue('thumbnail'))).consumerCount === 0, 15_000);
    assert.equal((await call('/v1/admin/stages/thumbnail/resume')).status, 200);
    await waitFor('the thumbnail consumer back', async () => (await stack.queueStats(stack.queue('thumbnail'))).consumerCount === 1, 15_000);
    assert.equal((await call('/v1/admin/stages/nosuch/pause')).status, 404);
  });
});
