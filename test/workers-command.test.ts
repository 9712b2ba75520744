import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { STAGES, type StageName } from '../src/shared/config.js';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { alive, logLines } from './helpers/logs.js';
import { freePort, LOG_DIR, Proc, Stack, waitFor } from './helpers/stack.js';

/**
 * The supervising commands on real services: `photopipe workers` starts exactly the roles asked
 * for (checked on the broker, through the management HTTP API as an operator would), refuses
 * unknown roles, lists roles and queues in its help; `photopipe start` (npm start) runs the whole
 * system, including its own local S3 server, heals a killed API and stops cleanly.
 */

const ROOT = join(import.meta.dirname, '..');
const MGMT = 'http://127.0.0.1:15672/api';
const MGMT_AUTH = `Basic ${Buffer.from('guest:guest').toString('base64')}`;

interface LogLine {
  msg?: string;
  childRole?: string;
  childPid?: number;
  restarts?: number;
  signal?: string | null;
  [key: string]: unknown;
}

async function mgmtQueue(name: string): Promise<{ consumers: number; consumer_details?: { prefetch_count: number }[] }> {
  const res = await fetch(`${MGMT}/queues/%2F/${encodeURIComponent(name)}`, { headers: { authorization: MGMT_AUTH } });
  if (!res.ok) throw new Error(`management API answered ${res.status} for queue ${name}`);
  return (await res.json()) as { consumers: number; consumer_details?: { prefetch_count: number }[] };
}

/** Output and exit code of a short CLI run with the stack's environment. */
async function runCli(stack: Stack, name: string, args: string[]): Promise<{ code: number | null; out: string }> {
  const p = stack.spawnCli(name, args);
  const res = await Promise.race([
    p.exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${args.join(' ')} did not exit within 60 s`)), 60_000).unref()),
  ]);
  return { code: res.code, out: readFileSync(join(LOG_DIR, `${stack.name}-${name}.log`), 'utf8') };
}

describe('photopipe workers', () => {
  let stack: Stack;

  before(async () => {
    stack = await Stack.start({ api: false, workers: 'none' });
  });

  after(async () => {
    await stack?.stop();
  });

  /** Starts `workers` with args, waits for its consumers, checks counts on the broker, then stops it. */
  async function checkOnlyFrame(name: string, args: string[], expectedPrefetch: number): Promise<void> {
    const proc = stack.spawnCli(name, ['workers', ...args]);
    await stack.waitForConsumers(['frame'], 1, 90_000);
    // The management API's numbers come from periodic statistics: wait for them to catch up.
    const frame = await waitFor(
      'the management API to report one consumer on the frame queue',
      async () => {
        const q = await mgmtQueue(stack.queue('frame'));
        return q.consumers === 1 && q.consumer_details?.length === 1 ? q : null;
      },
      30_000,
      500,
    );
    assert.equal(frame.consumer_details?.[0]?.prefetch_count, expectedPrefetch, 'in-flight messages per process');
    for (const s of STAGES.filter((x): x is StageName => x !== 'frame')) {
      assert.equal((await mgmtQueue(stack.queue(s))).consumers, 0, `management API: no consumer on ${s}`);
      assert.equal((await stack.queueStats(stack.queue(s))).consumerCount, 0, `broker: no consumer on ${s}`);
    }
    const started = logLines<LogLine>(stack, name).filter((l) => l.msg === 'process started');
    assert.deepEqual(
      started.map((l) => l.childRole),
      ['worker:frame'],
      'the supervisor started one process, for frame',
    );
    const childPid = started[0]?.childPid;
    assert.ok(typeof childPid === 'number' && alive(childPid));
    const res = await proc.stop();
    assert.deepEqual(res, { code: 0, signal: null }, 'SIGTERM stops the supervisor cleanly');
    assert.equal(alive(childPid), false, 'the worker process is gone with its supervisor');
    await waitFor('the frame consumer to go away', async () => (await stack.queueStats(stack.queue('frame'))).consumerCount === 0, 15_000);
    // ...and from the management statistics too, so the next check does not read this run's numbers.
    await waitFor('the management API to report no consumer on frame', async () => (await mgmtQueue(stack.queue('frame'))).consumers === 0, 30_000, 500);
  }

  it('--queues frame starts only the frame consumer', async () => {
    await checkOnlyFrame('workers-frame', ['--queues', 'frame'], 2);
  });

  it('--queues takes queue names too, and --concurrency sets in-flight messages per process', async () => {
    await checkOnlyFrame('workers-frame-queue', ['--queues', stack.queue('frame'), '--concurrency', '3'], 3);
  });

  it('refuses an unknown role, an empty role list and a bad --concurrency with exit code 2', async () => {
    const unknown = await runCli(stack, 'workers-unknown', ['workers', '--queues', 'frame,resize']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.out, /unknown role "resize"/);
    assert.match(unknown.out, /roles: ingest, exif, geocode, frame, thumbnail, upload/);
    assert.doesNotMatch(unknown.out, /process started/, 'nothing was started');

    const empty = await runCli(stack, 'workers-empty', ['workers', '--queues', ',']);
    assert.equal(empty.code, 2);
    assert.match(empty.out, /no role given/);

    const badConcurrency = await runCli(stack, 'workers-bad-concurrency', ['workers', '--queues', 'frame', '--concurrency', '0']);
    assert.equal(badConcurrency.code, 2);
    assert.match(badConcurrency.out, /--concurrency must be a positive integer/);
  });

  it('--help lists every role with its queue name', async () => {
    const help = await runCli(stack, 'workers-help', ['workers', '--help']);
    assert.equal(help.code, 0);
    for (const s of STAGES) {
      assert.match(help.out, new RegExp(`^\\s+${s}\\s+${stack.queue(s).replace(/\./g, '\\.')}\\s+\\S`, 'm'), `help row for ${s}`);
    }
  });
});

describe('photopipe start (npm start)', () => {
  let stack: Stack;
  let s3Dir = '';

  before(async () => {
    // The Stack gives a database, queue prefix and Redis prefix of our own, and removes them again.
    stack = await Stack.start({ api: false, workers: 'none' });
    s3Dir = mkdtempSync(join(tmpdir(), 'photopipe-start-s3-'));
  });

  after(async () => {
    await stack?.stop();
    rmSync(s3Dir, { recursive: true, force: true });
  });

  it('runs API, workers and its own local S3 server; heals a killed API; Ctrl-C stops everything and npm start exits 0', async () => {
    const [apiPort, s3Port] = [await freePort(), await freePort()];
    // S3_ENDPOINT unset: `start` must run the local S3 server itself.
    const env: Record<string, string> = { ...stack.env, PORT: String(apiPort), LOCAL_S3_PORT: String(s3Port), LOCAL_S3_DIR: s3Dir, SUPERVISOR_INITIAL_BACKOFF_MS: '500' };
    for (const k of ['S3_ENDPOINT', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY']) delete env[k];
    const base = { ...process.env };
    for (const k of ['S3_ENDPOINT', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY']) delete base[k];
    const logName = 'start';
    const out = createWriteStream(join(LOG_DIR, `${stack.name}-${logName}.log`), { flags: 'a' });
    // The README's run command itself, in a process group of its own as a terminal would run it.
    const child = spawn('npm', ['start'], { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout.pipe(out);
    child.stderr.pipe(out);
    const start = new Proc('start', child);
    stack.procs.push(start); // stopped by stack.stop() if the test fails half-way
    stack.apiUrl = `http://127.0.0.1:${apiPort}`;

    const ready = async () => {
      const res = await fetch(`${stack.apiUrl}/readyz`).catch(() => null);
      return res?.status === 200 ? ((await res.json()) as { checks: Record<string, string> }) : null;
    };
    const readyBody = await waitFor('the API of `start` to be ready', ready, 90_000, 300);
    assert.deepEqual(readyBody.checks, { redis: 'ok', rabbitmq: 'ok', postgres: 'ok', s3: 'ok' });
    await stack.waitForConsumers([...STAGES], 1, 90_000);

    const started = () => logLines<LogLine>(stack, logName).filter((l) => l.msg === 'process started');
    const roles = ['local-s3', 'api', ...STAGES.map((s) => `worker:${s}`), 'reconciler'];
    await waitFor('every role started', async () => roles.every((r) => started().some((l) => l.childRole === r)), 30_000);

    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0029.jpg'), `start-${stack.name}`), { filename: 'a.jpg' });
    assert.equal(await stack.waitFinal(id, 90_000), 'complete');
    const first = await stack.getPhoto(id);
    assert.equal(first.status, 200);
    const framed = first.body.variants?.framed.url;
    assert.ok(framed && framed.startsWith(`http://127.0.0.1:${s3Port}/`), `renditions are served by the local S3 server of start: ${framed}`);
    assert.equal((await fetch(framed)).status, 200);

    // kill -9 the API: the supervisor restarts it and it answers again.
    const apiPid = started().find((l) => l.childRole === 'api')?.childPid;
    assert.ok(typeof apiPid === 'number');
    const killedAt = Date.now();
    process.kill(apiPid, 'SIGKILL');
    const restart = await waitFor(
      'the supervisor to restart the API',
      async () => logLines<LogLine>(stack, logName).find((l) => l.msg === 'process exited unexpectedly; restarting' && l.childRole === 'api'),
      30_000,
    );
    assert.equal(restart.signal, 'SIGKILL');
    assert.equal(restart.restarts, 1);
    await waitFor('the restarted API to be ready', ready, 90_000, 200);
    console.log(`# start: API answered /readyz again ${Date.now() - killedAt} ms after kill -9`);
    const newApiPid = started().filter((l) => l.childRole === 'api').at(-1)?.childPid;
    assert.ok(typeof newApiPid === 'number' && newApiPid !== apiPid && alive(newApiPid));
    const second = await stack.uploadOk(distinctJpeg(photo('jpg/Canon_PowerShot_S40.jpg'), `start2-${stack.name}`));
    assert.equal(await stack.waitFinal(second, 90_000), 'complete');

    // Ctrl-C: the terminal sends SIGINT to the whole foreground group (npm, the supervisor); every
    // child stops within the grace period and `npm start` exits 0.
    const pids = roles.map((r) => started().filter((l) => l.childRole === r).at(-1)?.childPid);
    assert.ok(pids.every((p): p is number => typeof p === 'number' && alive(p)), 'every role is running before Ctrl-C');
    const stopAt = Date.now();
    process.kill(-child.pid!, 'SIGINT');
    const res = await Promise.race([
      start.exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('start did not exit within grace + 15 s')), stack.config.SHUTDOWN_GRACE_MS + 15_000).unref()),
    ]);
    assert.deepEqual(res, { code: 0, signal: null });
    console.log(`# start: stopped in ${Date.now() - stopAt} ms after Ctrl-C`);
    assert.deepEqual(
      pids.filter((p) => alive(p)),
      [],
      'no child left running',
    );
    assert.ok(logLines<LogLine>(stack, logName).some((l) => l.msg === 'all processes stopped'));
  });
});
