import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { logLines } from './helpers/logs.js';
import { freePort, Stack, waitFor, type Proc } from './helpers/stack.js';
import { STAGES } from '../src/shared/config.js';

interface LogLine {
  msg?: string;
  port?: number;
  photoId?: string;
  tenantId?: string;
  stage?: string;
  attempt?: number;
  cid?: string;
}

/** Sums a Prometheus counter's samples whose labels include all of `labels`. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').at(-1));
  }
  return sum;
}

/**
 * What ops see: Prometheus metrics from the API and every worker process (their own port), the
 * fleet-wide counts in Redis that the dashboard shows, failed-photo inspection and replay on the
 * admin API, and one correlation id that follows a photo through every process's logs.
 */
describe('observability', () => {
  let stack: Stack;
  const admin = `admin-${randomBytes(12).toString('hex')}`;
  let adminUrl = '';
  const frames: Proc[] = [];
  const others: Proc[] = [];

  const metricsPort = (p: Proc) => logLines<LogLine>(stack, p.name).find((l) => l.msg === 'metrics and health port listening')?.port;
  const scrape = async (p: Proc) => (await fetch(`http://127.0.0.1:${metricsPort(p)}/metrics`)).text();
  const adminGet = async <T>(path: string) => {
    const res = await fetch(`${adminUrl}${path}`, { headers: { authorization: `Bearer ${admin}` } });
    assert.equal(res.status, 200, `${path}: ${res.status}`);
    return (await res.json()) as T;
  };

  before(async () => {
    stack = await Stack.start({ workers: 'none', api: false });
    const port = await freePort();
    adminUrl = `http://127.0.0.1:${port}`;
    stack.apiUrl = adminUrl;
    await stack.startApi({ PORT: String(port), ADMIN_API_KEY: admin });
    // One process per role, and two for frame.
    for (const role of STAGES.filter((s) => s !== 'frame')) others.push(await stack.startWorkers([role]));
    for (let i = 0; i < 2; i++) frames.push(stack.spawnCli(`frame-${i}`, ['worker', '--role', 'frame']));
    await stack.waitForConsumers(['frame'], 2);
    await waitFor('every worker\'s metrics port', async () => [...frames, ...others].every((p) => metricsPort(p) !== undefined), 30_000);
  });

  after(async () => {
    await stack?.stop();
  });

  it('counts exactly the processed photos in each frame process, and the fleet-wide count is their sum', async () => {
    const before = await Promise.all(frames.map(scrape));
    const base = before.map((t) => sample(t, 'photopipe_stage_messages_total', { stage: 'frame', outcome: 'succeeded' }));
    const N = 20;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) ids.push(await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), `count-${i}`)));
    const final = await stack.waitAllFinal(ids, 120_000);
    assert.deepEqual([...new Set(final.values())], ['complete']);
    const after = await Promise.all(frames.map(scrape));
    const perProcess = after.map((t, i) => sample(t, 'photopipe_stage_messages_total', { stage: 'frame', outcome: 'succeeded' }) - base[i]!);
    assert.equal(perProcess[0]! + perProcess[1]!, N, `per process: ${perProcess.join(' + ')}`);
    for (const t of after) {
      assert.match(t, /^process_cpu_seconds_total\{role="worker:frame"\} /m, 'process metrics');
      assert.ok(sample(t, 'photopipe_stage_duration_seconds_count', { stage: 'frame', outcome: 'succeeded' }) >= perProcess[after.indexOf(t)]!, 'a duration per success');
      assert.doesNotMatch(t, /photoId|tenant/i, 'no photo or tenant ids in labels');
    }
    // The fleet's count (every process, in Redis) is the sum: what the dashboard shows.
    const fleet = await waitFor('the fleet totals to be flushed', async () => {
      const snap = await adminGet<{ totals: Record<string, number> }>('/v1/admin/dashboard/history?seconds=1').then(() => stack.redis.hgetall(`${stack.config.REDIS_KEY_PREFIX}stats:totals`));
      return Number(snap['frame|succeeded'] ?? 0) >= N && Number(snap['upload|succeeded'] ?? 0) >= N ? snap : null;
    }, 10_000);
    assert.equal(Number(fleet['frame|succeeded']), N);
    assert.equal(Number(fleet['upload|succeeded']), N);

    const api = await (await fetch(`${adminUrl}/metrics`)).text();
    assert.equal(sample(api, 'photopipe_http_uploads_total', { status: '202' }), N);
    // The management API's statistics are periodic (every 5 s by default): wait for them.
    await waitFor('the queue consumers gauge', async () => sample(await (await fetch(`${adminUrl}/metrics`)).text(), 'photopipe_queue_consumers', { queue: stack.queue('frame') }) === 2, 20_000, 500);
    assert.match(api, /photopipe_redis_blob_bytes\{role="api"\} 0/, 'no bytes held once every photo is complete');
  });

  it('keeps the fleet-wide counts across a worker restart, and serves health on the worker port', async () => {
    const totals = async () => Number((await stack.redis.hget(`${stack.config.REDIS_KEY_PREFIX}stats:totals`, 'frame|succeeded')) ?? 0);
    const was = await totals();
    const port = metricsPort(frames[0]!);
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
    frames[0]!.kill('SIGKILL');
    await frames[0]!.exited;
    frames[0] = stack.spawnCli('frame-0b', ['worker', '--role', 'frame']);
    await stack.waitForConsumers(['frame'], 2);
    assert.equal(await totals(), was, 'fleet counts live in Redis, not in a process');
    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), 'after-restart'));
    assert.equal(await stack.waitFinal(id), 'complete');
    await waitFor('the new count', async () => (await totals()) === was + 1, 10_000);
  });

  it('follows one correlation id from the API through every stage\'s process', async () => {
    const cid = `trace-${randomBytes(6).toString('hex')}`;
    const res = await fetch(`${adminUrl}/v1/photos`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'image/jpeg', 'x-correlation-id': cid },
      body: distinctJpeg(photo('jpg/Canon_PowerShot_S40.jpg'), cid),
    });
    assert.equal(res.status, 202);
    assert.equal(res.headers.get('x-correlation-id'), cid, 'echoed in the 202');
    const { id } = (await res.json()) as { id: string };
    assert.equal(await stack.waitFinal(id), 'complete');
    await waitFor('the last stage to log', async () => logLines<LogLine>(stack, others.find((p) => p.name.endsWith('upload'))!.name).some((l) => l.cid === cid), 10_000);
    const byProcess = new Map<string, LogLine[]>();
    for (const p of [stack.api!, ...others, ...frames]) byProcess.set(p.name, logLines<LogLine>(stack, p.name).filter((l) => l.cid === cid));
    const api = byProcess.get(stack.api!.name)!;
    assert.ok(api.some((l) => l.msg === 'photo accepted' && l.photoId === id), 'the API logged the acceptance with the id');
    for (const stage of ['ingest', 'exif', 'frame', 'thumbnail', 'upload']) {
      const lines = [...byProcess.values()].flat().filter((l) => l.stage === stage && l.msg === 'stage done');
      assert.equal(lines.length, 1, `one "stage done" for ${stage}`);
      assert.equal(lines[0]!.photoId, id);
      assert.equal(lines[0]!.tenantId, stack.tenant);
      assert.equal(lines[0]!.attempt, 1);
    }
    const processes = [...byProcess.entries()].filter(([, l]) => l.length > 0).map(([n]) => n);
    assert.ok(processes.length >= 5, `the id crossed ${processes.length} processes`);
  });

  it('groups failures by stage and code, shows one with its dead letter, and replays a group', async () => {
    const bad = await stack.uploadOk(photo('jpg/corrupted.jpg'));
    assert.equal(await stack.waitFinal(bad), 'failed');
    const list = await waitFor('the failure listed', async () => {
      const l = await adminGet<{ groups: { stage: string; code: string; count: number }[]; items: { id: string; stage: string; code: string; reason: string }[] }>('/v1/admin/photos?status=failed');
      return l.items.some((i) => i.id === bad) ? l : null;
    }, 20_000);
    const item = list.items.find((i) => i.id === bad)!;
    assert.ok(['frame', 'thumbnail'].includes(item.stage));
    assert.ok(list.groups.some((g) => g.stage === item.stage && g.code === item.code && g.count >= 1));
    const one = await waitFor('its dead letters', async () => {
      const d = await adminGet<{ error: { reason: string }; deadLetters: { stage: string; headers: Record<string, unknown> }[] | null }>(`/v1/admin/photos/${bad}`);
      return d.deadLetters && d.deadLetters.length > 0 ? d : null;
    }, 20_000);
    assert.match(one.error.reason, /corrupt|premature|decode/i);
    assert.equal(one.deadLetters![0]!.headers['x-photo-id'], bad);
    const res = await fetch(`${adminUrl}/v1/admin/photos/replay`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ stage: item.stage, code: item.code }),
    });
    assert.equal(res.status, 200);
    const replay = (await res.json()) as { replayed: { photoId: string }[] };
    assert.ok(replay.replayed.some((r) => r.photoId === bad), JSON.stringify(replay));
  });
});
