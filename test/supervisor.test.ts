import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import amqplib from 'amqplib';
import { STAGES, type StageName } from '../src/shared/config.js';
import { WORKER_ROLES } from '../src/workers/roles.js';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { alive, logLines, logText } from './helpers/logs.js';
import { sleep, Stack, waitFor, type Proc } from './helpers/stack.js';

/**
 * The supervisor of `photopipe workers` on real services: a worker killed with -9 in the middle
 * of a stream of uploads is restarted and no accepted photo is lost; a role that crashes at
 * start-up is restarted a bounded number of times and then given up on, loudly, while the other
 * roles keep working; SIGTERM stops everything with exit 0 and leaves no process behind.
 */

interface LogLine {
  level?: string;
  msg?: string;
  childRole?: string;
  childPid?: number;
  restarts?: number;
  restartInMs?: number;
  code?: number | null;
  signal?: string | null;
  exits?: number;
  lastStderr?: string[];
  lastStdout?: string[];
  [key: string]: unknown;
}

const STARTED = 'process started';
const RESTARTING = 'process exited unexpectedly; restarting';

/** The pid of the newest process the supervisor started for a role. */
function currentPid(stack: Stack, log: string, role: string): number {
  const pid = logLines<LogLine>(stack, log)
    .filter((l) => l.msg === STARTED && l.childRole === role)
    .at(-1)?.childPid;
  assert.ok(typeof pid === 'number', `a started ${role} in ${log}`);
  return pid;
}

async function stopWithin(p: Proc, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  p.kill('SIGTERM');
  return Promise.race([
    p.exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${p.name} did not exit within ${ms} ms of SIGTERM`)), ms).unref()),
  ]);
}

describe('supervised worker processes (photopipe workers)', () => {
  let stack: Stack;

  before(async () => {
    stack = await Stack.start({ workers: 'none' });
  });

  // A failed test must not leave its supervisor (and its consumers) behind for the next one.
  afterEach(async () => {
    await Promise.all(stack.procs.filter((p) => p.name.startsWith('workers') && p.running).map((p) => p.stop(stack.config.SHUTDOWN_GRACE_MS + 10_000)));
  });

  after(async () => {
    await stack?.stop();
  });

  it('restarts each role after kill -9 during a stream of uploads; every accepted photo completes', async () => {
    const sup = stack.spawnCli('workers', ['workers']);
    await stack.waitForConsumers([...STAGES], 1, 120_000);
    // Every role: the pipeline's stages and the service roles (webhook, batch download/dispatch).
    const roles = WORKER_ROLES.map((r) => `worker:${r}`);
    assert.deepEqual(
      logLines<LogLine>(stack, 'workers')
        .filter((l) => l.msg === STARTED)
        .map((l) => l.childRole)
        .sort(),
      [...roles].sort(),
      'one process per role',
    );

    // One connection for polling consumer counts: fast enough to time the gap to ~50 ms.
    const conn = await amqplib.connect(stack.config.AMQP_URL);
    const ch = await conn.createChannel();
    const consumers = async (s: StageName) => (await ch.checkQueue(stack.queue(s))).consumerCount;

    const ids: string[] = [];
    let streaming = true;
    const uploader = (async () => {
      const pictures = [photo('jpg/gps/DSCN0029.jpg'), photo('jpg/Canon_PowerShot_S40.jpg')];
      for (let i = 0; streaming && i < 300; i++) {
        ids.push(await stack.uploadOk(distinctJpeg(pictures[i % 2]!, `${stack.name}-${i}`)));
        await sleep(200);
      }
    })().then(
      () => null,
      (err: unknown) => err,
    );

    const gaps: Record<string, number> = {};
    try {
      for (const stage of STAGES) {
        const role = `worker:${stage}`;
        const uploaded = ids.length;
        await waitFor('more uploads in flight', async () => ids.length >= uploaded + 3, 30_000);
        const pid = currentPid(stack, 'workers', role);
        const killedAt = Date.now();
        process.kill(pid, 'SIGKILL');
        await waitFor(`the broker to drop the killed ${stage} consumer`, async () => (await consumers(stage)) === 0, 15_000, 20);
        await waitFor(`a new ${stage} consumer`, async () => (await consumers(stage)) >= 1, 90_000, 50);
        gaps[stage] = Date.now() - killedAt;

        const restart = logLines<LogLine>(stack, 'workers').find((l) => l.msg === RESTARTING && l.childRole === role);
        assert.ok(restart, `restart of ${role} logged`);
        assert.equal(restart.childPid, pid);
        assert.equal(restart.signal, 'SIGKILL');
        assert.equal(restart.code, null);
        assert.equal(restart.restarts, 1);
        assert.equal(restart.restartInMs, 1_000, 'first restart after the initial backoff');
        const replacement = currentPid(stack, 'workers', role);
        assert.notEqual(replacement, pid);
        assert.ok(alive(replacement));
        assert.equal(alive(pid), false);
      }
    } finally {
      streaming = false;
      await conn.close().catch(() => {});
    }
    const uploadErr = await uploader;
    assert.equal(uploadErr, null, `every upload was accepted: ${String(uploadErr)}`);
    console.log(`# kill -9 -> replacement consuming again (ms): ${JSON.stringify(gaps)}`);
    console.log(`# ${ids.length} photos uploaded during the kills`);

    const final = await stack.waitAllFinal(ids, 150_000);
    const notComplete = [...final].filter(([, st]) => st !== 'complete');
    assert.deepEqual(notComplete, [], 'every accepted photo completes');
    for (const s of STAGES) assert.equal((await stack.queueStats(stack.dlq(s))).messageCount, 0, `nothing dead-lettered in ${s}`);

    const pids = STAGES.map((s) => currentPid(stack, 'workers', `worker:${s}`));
    assert.deepEqual(await stopWithin(sup, stack.config.SHUTDOWN_GRACE_MS + 10_000), { code: 0, signal: null });
    assert.deepEqual(
      pids.filter((p) => alive(p)),
      [],
      'no worker left running',
    );
  });

  it('gives up on a role that exits at start-up, loudly, while the other roles keep working; SIGTERM exits 0', async () => {
    const name = 'workers-faulty';
    const sup = stack.spawnCli(name, ['workers'], {
      PHOTOPIPE_TEST_FAULTS: JSON.stringify({ exif: { exitOnStart: true } }),
      SUPERVISOR_INITIAL_BACKOFF_MS: '100',
      SUPERVISOR_CRASH_LIMIT: '3',
      // Generous: one start of a worker takes several seconds on this shared machine, and all four
      // must fall inside the window.
      SUPERVISOR_CRASH_WINDOW_MS: '120000',
    });
    const fatal = await waitFor(
      'the supervisor to give up on worker:exif',
      async () => logLines<LogLine>(stack, name).find((l) => l.level === 'fatal' && l.childRole === 'worker:exif'),
      150_000,
      250,
    );
    assert.match(fatal.msg ?? '', /^GIVING UP on worker:exif: it exited 4 times within 120000 ms \(last: code 3\)/);
    assert.equal(fatal.exits, 4);
    assert.equal(fatal.code, 3);
    // The child reports its fault through its JSON log on stdout; the report carries its last lines.
    assert.ok(fatal.lastStdout?.some((l) => l.includes('injected fault: exiting at start-up')), JSON.stringify(fatal.lastStdout));
    assert.ok(fatal.lastStderr?.some((l) => l === 'injected fault: exif cannot start'), JSON.stringify(fatal.lastStderr));
    assert.match(fatal.msg ?? '', /Last stderr lines:\n[\s\S]*injected fault: exif cannot start[\s\S]*Last stdout lines:\n[\s\S]*injected fault: exiting at start-up/);
    assert.match(logText(stack, name), /={78}\nGIVING UP on worker:exif[^\n]*\n--- last stderr lines of worker:exif ---/, 'a readable report on stderr');

    const exifStarts = () => logLines<LogLine>(stack, name).filter((l) => l.msg === STARTED && l.childRole === 'worker:exif');
    assert.deepEqual(
      exifStarts().map((l) => l.restarts),
      [0, 1, 2, 3],
    );
    const restarts = logLines<LogLine>(stack, name).filter((l) => l.msg === RESTARTING && l.childRole === 'worker:exif');
    assert.deepEqual(
      restarts.map((l) => [l.code, l.restartInMs]),
      [
        [3, 100],
        [3, 200],
        [3, 400],
      ],
      'exit code 3 each time, backoff doubling from 100 ms',
    );

    // The other roles work: a photo goes through ingest, frame, thumbnail and upload; exif waits.
    const others = STAGES.filter((s) => s !== 'exif');
    await stack.waitForConsumers(others, 1, 120_000);
    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0029.jpg'), `faulty-${stack.name}`));
    const row = await waitFor(
      'the photo to go through every stage but exif',
      async () => {
        const { rows } = await stack.db.query(`SELECT status, stages FROM photos WHERE id = $1`, [id]);
        return rows[0]?.stages?.upload === 'done' ? (rows[0] as { status: string; stages: Record<string, string> }) : null;
      },
      90_000,
      200,
    );
    assert.equal(row.status, 'processing');
    // convert and store belong to batch outputs only: an upload skips them.
    assert.deepEqual(row.stages, { ingest: 'done', exif: 'pending', frame: 'done', thumbnail: 'done', upload: 'done', convert: 'skipped', store: 'skipped' });
    const exifQueue = await stack.queueStats(stack.queue('exif'));
    assert.deepEqual(exifQueue, { queue: stack.queue('exif'), messageCount: 1, consumerCount: 0 }, 'its exif message waits in the queue');
    assert.equal(exifStarts().length, 4, 'no further exif start after giving up');

    const pids = others.map((s) => currentPid(stack, name, `worker:${s}`));
    assert.ok(pids.every((p) => alive(p)));
    assert.deepEqual(await stopWithin(sup, stack.config.SHUTDOWN_GRACE_MS + 10_000), { code: 0, signal: null });
    assert.deepEqual(
      pids.filter((p) => alive(p)),
      [],
      'no worker left running',
    );
  });

  it('Ctrl-C (SIGINT) stops every role with exit 0; workers whose supervisor is killed stop too, instead of running unsupervised', async () => {
    const roles: StageName[] = ['frame', 'thumbnail'];
    const interrupted = stack.spawnCli('workers-sigint', ['workers', '--queues', roles.join(',')]);
    await stack.waitForConsumers(roles, 1, 60_000);
    const pids = roles.map((s) => currentPid(stack, 'workers-sigint', `worker:${s}`));
    interrupted.kill('SIGINT');
    const res = await Promise.race([
      interrupted.exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no exit within the grace period after SIGINT')), stack.config.SHUTDOWN_GRACE_MS + 10_000).unref()),
    ]);
    assert.deepEqual(res, { code: 0, signal: null });
    assert.deepEqual(pids.filter((p) => alive(p)), [], 'no worker left running');
    for (const s of roles) await waitFor(`no consumer on ${s}`, async () => (await stack.queueStats(stack.queue(s))).consumerCount === 0, 20_000, 200);

    const orphaned = stack.spawnCli('workers-orphaned', ['workers', '--queues', 'frame']);
    await stack.waitForConsumers(['frame'], 1, 60_000);
    const pid = currentPid(stack, 'workers-orphaned', 'worker:frame');
    orphaned.kill('SIGKILL');
    await orphaned.exited;
    // The worker notices within a second that its parent is gone and shuts down gracefully.
    await waitFor('the orphaned worker to stop', async () => !alive(pid), stack.config.SHUTDOWN_GRACE_MS + 10_000, 100);
    await waitFor('its consumer to be gone', async () => (await stack.queueStats(stack.queue('frame'))).consumerCount === 0, 20_000, 200);
  });

  it('exits 1 (not 0) once every role it supervises was given up on', async () => {
    const name = 'workers-exif-only';
    const sup = stack.spawnCli(name, ['workers', '--queues', 'exif'], {
      PHOTOPIPE_TEST_FAULTS: JSON.stringify({ exif: { exitOnStart: true } }),
      SUPERVISOR_INITIAL_BACKOFF_MS: '100',
      SUPERVISOR_CRASH_LIMIT: '1',
      SUPERVISOR_CRASH_WINDOW_MS: '120000',
    });
    const res = await Promise.race([
      sup.exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the supervisor kept running with nothing to supervise')), 90_000).unref()),
    ]);
    assert.deepEqual(res, { code: 1, signal: null });
    const lines = logLines<LogLine>(stack, name);
    assert.equal(lines.filter((l) => l.msg === STARTED).length, 2, 'one start and one restart');
    assert.ok(lines.some((l) => l.level === 'fatal' && l.msg === 'every supervised process was given up on: exiting 1'));
  });
});
