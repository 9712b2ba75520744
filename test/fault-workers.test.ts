import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { StageName } from '../src/shared/config.js';
import { Stack, waitFor } from './helpers/stack.js';
import { assertProper503, checkOutcomes, newTenant, UploadStream, workerLogLines, workerProc } from './helpers/fault-check.js';

/**
 * Fault suite, part A (processes and the stack's own S3): workers killed with SIGKILL or stopped
 * with SIGTERM mid-stream, the API stopped during an upload stream, S3 gone for a while. Nothing
 * here touches the shared services, so it runs under the shared lock:
 *   flock -s /tmp/photopipe-services.lock node --import tsx --test test/fault-workers.test.ts
 * Every case uses a tenant of its own in one stack, and ends with the same check: every 202 ends
 * in exactly one final state with its rows and objects, and no photo is completed twice.
 */
describe('fault suite: worker processes and S3', () => {
  let stack: Stack;
  const GRACE_MS = 10_000; // the harness's SHUTDOWN_GRACE_MS

  before(async () => {
    // Upload gets enough attempts (200..3200 ms backoff) to ride out S3 being away for a few seconds.
    stack = await Stack.start({ workers: 'each', env: { STAGE_MAX_ATTEMPTS: 'upload=12', SHUTDOWN_GRACE_MS: String(GRACE_MS) } });
  });

  after(async () => {
    await stack?.stop();
  });

  /** A non-empty ready count means the role's consumer has its prefetch window full: it holds messages. */
  const backlog = async (stage: StageName, atLeast = 1) => (await stack.queueStats(stack.queue(stage))).messageCount >= atLeast;

  /** A stopped worker's log lines, once its last line ("stopped") has reached the log file. */
  const linesUntilStopped = (pid: number) =>
    waitFor(`the log of worker ${pid} up to "stopped"`, async () => {
      const own = workerLogLines(stack).filter((l) => l.pid === pid);
      return own.some((l) => l.msg === 'stopped') && own;
    }, 10_000, 50);

  it('kill -9 of the ingest, frame and upload workers in a stream of 200 uploads: all 200 complete once replaced', async (t) => {
    const { tenant, key } = await newTenant(stack, 'kill9');
    // The stream is released in bursts, so that every kill lands between uploads, with a backlog.
    const stream = new UploadStream(stack, key, { max: 200, concurrency: 8, salt: `kill9-${Date.now()}`, hold: 20 }).start();

    // ingest keeps up with the API, so it is frozen first (SIGSTOP): the broker goes on delivering
    // to a frozen consumer until its prefetch window is full, and a backlog behind it proves that
    // it holds messages when it is killed.
    const freezeAndKill = async (role: StageName, allowUploads: number) => {
      const p = workerProc(stack, role);
      p.kill('SIGSTOP');
      try {
        stream.allow(allowUploads);
        await waitFor(`the frozen ${role} worker to hold messages`, () => backlog(role), 60_000, 50);
      } finally {
        p.kill('SIGKILL');
      }
      assert.equal((await p.exited).signal, 'SIGKILL');
      await stack.startWorkers([role]);
    };

    await stream.waitAccepted(20);
    await freezeAndKill('ingest', 60);

    // frame is the slow stage: after a burst, its handlers are running (a backlog waits behind
    // its prefetch window) when it is killed.
    stream.allow(120);
    await waitFor('frame to hold messages (a backlog in its queue)', () => backlog('frame'), 60_000, 20);
    const frame = workerProc(stack, 'frame');
    frame.kill('SIGKILL');
    assert.equal((await frame.exited).signal, 'SIGKILL');
    await stack.startWorkers(['frame']);

    await freezeAndKill('upload', 200);

    await stream.done();
    assert.deepEqual(stream.statusCounts(), { 202: 200 });
    const out = await checkOutcomes(stack, tenant, stream.accepted, { timeoutMs: 180_000 });
    assert.equal(out.complete.length, 200);
    t.diagnostic(`stage re-runs after redelivery: ${out.stageReruns}`);
  });

  it('SIGTERM to a worker holding messages: exits 0 within the grace period, and nothing is lost', async (t) => {
    const { tenant, key } = await newTenant(stack, 'term');
    const stream = new UploadStream(stack, key, { max: 50, concurrency: 6, salt: `term-${Date.now()}` }).start();

    // 1. Handlers that finish within the grace period: the worker drains what it holds and exits 0.
    await stream.waitAccepted(15);
    await waitFor('frame to hold messages', () => backlog('frame'), 60_000, 50);
    const frame = workerProc(stack, 'frame');
    let started = Date.now();
    frame.kill('SIGTERM');
    let exit = await frame.exited;
    let tookMs = Date.now() - started;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(tookMs < GRACE_MS + 5_000, `exited after ${tookMs} ms`);
    const own = await linesUntilStopped(frame.pid);
    const stopAt = own.find((l) => l.msg === 'shutting down')?.time as string;
    assert.ok(stopAt, 'the worker logged its shutdown');
    assert.ok(own.some((l) => l.msg === 'stage done' && (l.time as string) > stopAt), 'it finished a message it held after SIGTERM');
    assert.ok(!own.some((l) => l.msg === 'grace period over: handing unfinished messages back to the broker'));

    // 2. A handler that outlives the grace period (injected hang): after SHUTDOWN_GRACE_MS the
    //    worker hands the message back to the broker and still exits 0.
    const hangGraceMs = 1_500;
    const hanging = await stack.startWorkers(['frame'], { PHOTOPIPE_TEST_FAULTS: JSON.stringify({ frame: { hang: true } }), SHUTDOWN_GRACE_MS: String(hangGraceMs) });
    await waitFor('the hanging frame worker to hold messages', () => backlog('frame'), 60_000, 50);
    started = Date.now();
    hanging.kill('SIGTERM');
    exit = await hanging.exited;
    tookMs = Date.now() - started;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(tookMs >= hangGraceMs - 100 && tookMs < hangGraceMs + 5_000, `exited after ${tookMs} ms`);
    const handedBack = (await linesUntilStopped(hanging.pid)).filter((l) => l.msg === 'grace period over: handing unfinished messages back to the broker');
    assert.equal(handedBack.length, 1, 'the hanging worker handed its messages back');
    assert.ok((handedBack[0]!.count as number) >= 1);

    // 3. A handler that honours its AbortSignal (injected slow start): aborted at the end of the
    //    grace period, it rejects after its message was handed back. That rejection must not also
    //    schedule a retry (a second copy of the message) or dead-letter the photo.
    const slow = await stack.startWorkers(['frame'], { PHOTOPIPE_TEST_FAULTS: JSON.stringify({ frame: { slowMs: 120_000 } }), SHUTDOWN_GRACE_MS: String(hangGraceMs) });
    await waitFor('the slow frame worker to hold messages', () => backlog('frame'), 60_000, 50);
    slow.kill('SIGTERM');
    assert.deepEqual(await slow.exited, { code: 0, signal: null });
    const slowLines = await linesUntilStopped(slow.pid);
    assert.equal(slowLines.filter((l) => l.msg === 'grace period over: handing unfinished messages back to the broker').length, 1);
    assert.deepEqual(
      slowLines.filter((l) => typeof l.msg === 'string' && (l.msg as string).startsWith('stage failed')),
      [],
      'an aborted handler neither scheduled a retry nor failed its photo',
    );

    // A replacement finishes everything, including what the stopped workers handed back.
    await stack.startWorkers(['frame']);
    await stream.done();
    assert.deepEqual(stream.statusCounts(), { 202: 50 });
    const out = await checkOutcomes(stack, tenant, stream.accepted, { timeoutMs: 120_000 });
    assert.equal(out.complete.length, 50);
    t.diagnostic(`stage re-runs after redelivery: ${out.stageReruns}`);
  });

  it('S3 down while photos are in the upload stage: upload retries with backoff and every photo completes', async (t) => {
    const { tenant, key } = await newTenant(stack, 's3');
    const stream = new UploadStream(stack, key, { max: 30, concurrency: 4, salt: `s3-${Date.now()}` }).start();
    const mine = () => new Set(stream.accepted);

    // Stop S3 once photos of this tenant reach the upload stage (frame and thumbnail done).
    await waitFor(
      'photos in the upload stage',
      async () => {
        const { rows } = await stack.db.query(
          `SELECT count(*)::int AS n FROM photos WHERE tenant_id = $1 AND stages->>'frame' = 'done' AND stages->>'thumbnail' = 'done'`,
          [tenant],
        );
        return rows[0].n >= 2;
      },
      60_000,
      50,
    );
    stack.s3Server!.kill('SIGKILL');
    await stack.s3Server!.exited;

    // Bring it back only after the upload stage has failed and rescheduled a few times.
    const retries = () =>
      workerLogLines(stack).filter((l) => l.msg === 'stage failed; scheduling retry' && l.stage === 'upload' && l.photoId && mine().has(l.photoId));
    await waitFor('upload retries while S3 is down', async () => retries().length >= 3, 60_000, 100);
    await stack.startS3();

    await stream.done();
    assert.deepEqual(stream.statusCounts(), { 202: 30 });
    const out = await checkOutcomes(stack, tenant, stream.accepted, { timeoutMs: 120_000 });
    assert.equal(out.complete.length, 30);

    const seen = retries();
    assert.ok(seen.every((l) => typeof l.code === 'string' && /^s3_/.test(l.code)), `retry codes: ${[...new Set(seen.map((l) => l.code))].join(',')}`);
    const lateSuccess = workerLogLines(stack).filter((l) => l.msg === 'stage done' && l.stage === 'upload' && (l.attempt ?? 1) > 1 && mine().has(l.photoId ?? ''));
    assert.ok(lateSuccess.length >= 1, 'an upload succeeded on a later attempt');
    t.diagnostic(`upload retries: ${seen.length}; uploads done on attempt > 1: ${lateSuccess.length}`);
  });

  it('SIGTERM to the API during an upload stream: in-flight uploads finish, it exits 0, every 202 is processed', async () => {
    const { tenant, key } = await newTenant(stack, 'apiterm');
    const stream = new UploadStream(stack, key, { max: 400, concurrency: 8, salt: `apiterm-${Date.now()}` }).start();
    await stream.waitAccepted(20);
    const api = stack.api!;
    const started = Date.now();
    api.kill('SIGTERM');
    const exit = await api.exited;
    const tookMs = Date.now() - started;
    await stream.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(tookMs < GRACE_MS + 5_000, `API exited after ${tookMs} ms`);

    // Answers: 202 (stored and queued), 503 while closing, or no answer once the port is closed.
    const bad = stream.results.filter((r) => ![202, 503, 0].includes(r.status));
    assert.deepEqual(bad, [], 'no other answer');
    for (const r of stream.results.filter((x) => x.status === 503)) assertProper503(r);
    assert.ok(stream.accepted.length >= 20);

    await stack.startApi();
    const out = await checkOutcomes(stack, tenant, stream.accepted, { timeoutMs: 120_000 });
    assert.equal(out.complete.length, stream.accepted.length);
  });
});
