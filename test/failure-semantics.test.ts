import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { STAGES, type StageName } from '../src/shared/config.js';
import { buildTopology } from '../src/queues/topology.js';
import { publicFailure } from '../src/api/failure-reasons.js';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { logLines } from './helpers/logs.js';
import { Stack, waitFor, type Proc } from './helpers/stack.js';
import { ApiKeyRepo } from '../src/db/api-key-repo.js';

/**
 * Retry and dead-letter semantics on real services: which failures are retried through the
 * delay queues, which go straight to the stage's DLQ, what the dead letter carries, and that
 * a per-message time limit keeps a hung handler from blocking its consumer.
 */

interface DeadLetter {
  messageId: string | undefined;
  headers: Record<string, unknown>;
  body: string;
}

interface LogLine {
  msg: string;
  level: string;
  stage?: string;
  photoId?: string;
  attempt?: number;
  err?: string;
  code?: string;
  reason?: string;
}

/** Reads every message of a DLQ without consuming it: closing the connection hands them back. */
async function deadLetters(stack: Stack, stage: StageName): Promise<DeadLetter[]> {
  return stack.amqp(async (ch) => {
    const queue = stack.dlq(stage);
    const { messageCount } = await ch.checkQueue(queue);
    const out: DeadLetter[] = [];
    for (let i = 0; i < messageCount; i++) {
      const m = await ch.get(queue, { noAck: false });
      if (!m) break;
      out.push({ messageId: m.properties.messageId as string | undefined, headers: (m.properties.headers ?? {}) as Record<string, unknown>, body: m.content.toString('utf8') });
    }
    return out;
  });
}

const forPhoto = (letters: DeadLetter[], photoId: string) => letters.filter((l) => l.headers['x-photo-id'] === photoId);

/**
 * A photo's failure is recorded in Postgres just before its dead letter is published, so a test
 * that saw the photo fail waits (bounded) for the letters too.
 */
async function waitDeadLetters(stack: Stack, stage: StageName, photoIds: string[], timeoutMs = 20_000): Promise<DeadLetter[]> {
  return waitFor(
    `dead letters in ${stage} for ${photoIds.length} photos`,
    async () => {
      const letters = await deadLetters(stack, stage);
      return photoIds.every((id) => forPhoto(letters, id).length > 0) ? letters : null;
    },
    timeoutMs,
    250,
  );
}

/** Messages the broker accepted into a queue so far, from the management API (its statistics lag a few seconds). */
async function publishedTo(queue: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:15672/api/queues/%2F/${encodeURIComponent(queue)}`, {
    headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` },
  });
  if (!res.ok) throw new Error(`management API answered ${res.status}`);
  const q = (await res.json()) as { message_stats?: { publish?: number } };
  return q.message_stats?.publish ?? 0;
}

async function failedRow(stack: Stack, id: string): Promise<{ status: string; error: { stage: string; reason: string; code: string; errorClass: string; attempts: number } | null; stages: Record<string, string> }> {
  const { rows } = await stack.db.query(`SELECT status, error, stages FROM photos WHERE id = $1`, [id]);
  assert.ok(rows[0], `photo ${id} exists`);
  return rows[0];
}

function assertIso(v: unknown, what: string): string {
  assert.equal(typeof v, 'string', `${what} is a string`);
  assert.ok(!Number.isNaN(Date.parse(v as string)), `${what} is a date: ${String(v)}`);
  return v as string;
}

describe('failure semantics: retries, dead letters, time limits', () => {
  let stack: Stack;
  let worker: Proc | null = null;
  let workerSeq = 0;

  /** One worker process with every role, started per test with that test's injected faults. */
  async function startWorker(label: string, env: Record<string, string> = {}): Promise<string> {
    const name = `worker-${++workerSeq}-${label}`;
    worker = stack.spawnCli(name, ['worker', '--role', STAGES.join(',')], env);
    await stack.waitForConsumers([...STAGES], 1);
    return name;
  }

  before(async () => {
    stack = await Stack.start({
      workers: 'none',
      env: {
        STAGE_MAX_ATTEMPTS: 'upload=3,thumbnail=2',
        STAGE_TIMEOUT_MS: 'thumbnail=1500',
        STAGE_PREFETCH: 'thumbnail=2',
      },
    });
  });

  afterEach(async () => {
    if (worker) {
      const { code } = await worker.stop();
      assert.equal(code, 0, `${worker.name} exits 0 on SIGTERM`);
      worker = null;
      // The next test's worker must be the only consumer.
      await waitFor('consumers gone', async () => (await stack.queueStats(stack.queue('ingest'))).consumerCount === 0, 30_000, 200);
    }
  });

  after(async () => {
    await stack?.stop();
  });

  it('dead-letters a corrupt or truncated JPEG after exactly one attempt, with the failure on the message and the photo', async () => {
    const logName = await startWorker('poison');
    const good = photo('jpg/gps/DSCN0010.jpg');
    const cases = {
      corrupt: photo('jpg/corrupted.jpg'), // decodes its header, fails in the pixel data
      truncatedBody: distinctJpeg(good, 'trunc-body').subarray(0, Math.floor(good.length * 0.6)), // header intact, scan cut off
      truncatedHeader: distinctJpeg(good, 'trunc-head').subarray(0, 2_000), // not even a readable header
    };
    const ids = Object.fromEntries(await Promise.all(Object.entries(cases).map(async ([k, bytes]) => [k, await stack.uploadOk(bytes)]))) as Record<keyof typeof cases, string>;
    const states = await stack.waitAllFinal(Object.values(ids), 120_000);
    for (const [k, id] of Object.entries(ids)) assert.equal(states.get(id), 'failed', `${k} ends failed`);

    // The header-less file fails at ingest; the others get past the header read and fail when decoded.
    const expectStages: Record<keyof typeof cases, StageName[]> = { corrupt: ['frame', 'thumbnail'], truncatedBody: ['frame', 'thumbnail'], truncatedHeader: ['ingest'] };
    const letters = {
      ingest: await waitDeadLetters(stack, 'ingest', [ids.truncatedHeader]),
      frame: await waitDeadLetters(stack, 'frame', [ids.corrupt, ids.truncatedBody]),
      thumbnail: await waitDeadLetters(stack, 'thumbnail', [ids.corrupt, ids.truncatedBody]),
    };

    for (const [k, id] of Object.entries(ids) as [keyof typeof cases, string][]) {
      const row = await failedRow(stack, id);
      assert.ok(row.error, `${k}: error recorded`);
      assert.ok(expectStages[k].includes(row.error.stage as StageName), `${k}: failed in ${row.error.stage}`);
      assert.equal(row.error.code, 'corrupt_image');
      assert.equal(row.error.errorClass, 'permanent');
      assert.equal(row.error.attempts, 1);
      assert.match(row.error.reason, /cannot decode image.*(premature end|corrupt)/i);

      // The API shows the same failure, with the public reason for its code (the stored one is for operators).
      const view = await stack.getPhoto(id);
      assert.equal(view.body.status, 'failed');
      assert.equal(view.body.error?.stage, row.error.stage);
      assert.equal(view.body.error?.code, row.error.code);
      assert.equal(view.body.error?.reason, publicFailure(row.error).reason);

      for (const stage of expectStages[k]) {
        const mine = forPhoto(letters[stage as keyof typeof letters], id);
        assert.equal(mine.length, 1, `${k}: exactly one dead letter in ${stage}`);
        const h = mine[0]!.headers;
        assert.equal(h['x-stage'], stage);
        assert.equal(h['x-error-class'], 'permanent');
        assert.equal(h['x-error-code'], 'corrupt_image');
        assert.match(String(h['x-reason']), /cannot decode image/);
        assert.equal(h['x-attempts'], 1);
        assert.equal(h['x-original-routing-key'], stage);
        assert.equal(h['x-tenant-id'], stack.tenant);
        const first = assertIso(h['x-first-failure-at'], 'x-first-failure-at');
        const last = assertIso(h['x-last-failure-at'], 'x-last-failure-at');
        assert.equal(first, last, 'a single attempt fails once');
        // The dead letter carries the original message, so it can be replayed as it was (with the
        // upload's correlation id, which follows the photo through every process's logs).
        const original = JSON.parse(mine[0]!.body) as { cid?: unknown };
        assert.equal(typeof original.cid, 'string');
        assert.deepEqual(original, { v: 1, photoId: id, tenantId: stack.tenant, cid: original.cid });
      }
    }
    // Never retried: no retry was scheduled for any of them, and each failing stage ran once.
    const lines = await waitFor(
      'the failure log lines',
      async () => {
        const l = logLines<LogLine>(stack, logName).filter((x) => x.photoId && Object.values(ids).includes(x.photoId));
        return l.filter((x) => x.msg.startsWith('stage failed: permanent failure')).length >= 5 ? l : null;
      },
      10_000,
    );
    assert.equal(lines.filter((x) => x.msg === 'stage failed; scheduling retry').length, 0);
    assert.equal(lines.filter((x) => x.msg.startsWith('stage failed: permanent failure')).length, 5, '2 + 2 + 1 failing stage runs');
    assert.ok(lines.filter((x) => x.msg.startsWith('stage failed')).every((x) => x.attempt === 1));
  });

  it('retries a transient failure through the delay queues and succeeds on attempt N+1', async () => {
    const logName = await startWorker('failfirst', { PHOTOPIPE_TEST_FAULTS: JSON.stringify({ frame: { failFirst: 2 } }) });
    const retryQueues = buildTopology(stack.config).retryLevels.slice(0, 2).map((l) => l.queue);
    const publishedBefore = await Promise.all(retryQueues.map((q) => publishedTo(q)));

    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0012.jpg'), `failfirst-${randomUUID()}`));
    assert.equal(await stack.waitFinal(id, 60_000), 'complete');
    const view = await stack.getPhoto(id);
    assert.equal(view.body.error, null);
    assert.equal(view.body.stages.frame, 'done');
    assert.ok(view.body.variants?.framed, 'the framed rendition exists');

    const frameLines = await waitFor(
      'frame log lines for the photo',
      async () => {
        const l = logLines<LogLine>(stack, logName).filter((x) => x.photoId === id && x.stage === 'frame');
        return l.some((x) => x.msg === 'stage done') ? l : null;
      },
      10_000,
    );
    const retries = frameLines.filter((x) => x.msg === 'stage failed; scheduling retry');
    assert.deepEqual(retries.map((x) => x.attempt), [1, 2], 'attempts 1 and 2 failed and were rescheduled');
    assert.ok(retries.every((x) => /injected failure on attempt/.test(x.err ?? '')));
    const done = frameLines.filter((x) => x.msg === 'stage done');
    assert.deepEqual(done.map((x) => x.attempt), [3], 'one success, on attempt 3');
    // Other stages were not disturbed by frame's retries.
    const dones = logLines<LogLine>(stack, logName).filter((x) => x.photoId === id && x.msg === 'stage done');
    for (const s of ['ingest', 'exif', 'thumbnail', 'upload']) assert.equal(dones.filter((x) => x.stage === s).length, 1, `${s} ran once`);

    // The retries waited in the first and second delay queues (first 200 ms, then 400 ms).
    await waitFor(
      'management statistics of the delay queues',
      async () => {
        const now = await Promise.all(retryQueues.map((q) => publishedTo(q)));
        return now.every((n, i) => n - publishedBefore[i]! === 1);
      },
      30_000,
      500,
    );
    for (const s of ['frame', 'ingest'] as const) assert.equal(forPhoto(await deadLetters(stack, s), id).length, 0, `no dead letter in ${s}`);
  });

  it('gives up after the stage maximum on a failure that never clears, and dead-letters with x-attempts = max', async () => {
    const logName = await startWorker('always', { PHOTOPIPE_TEST_FAULTS: JSON.stringify({ upload: { always: true } }) });
    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0025.jpg'), `always-${randomUUID()}`));
    assert.equal(await stack.waitFinal(id, 60_000), 'failed');
    const row = await failedRow(stack, id);
    assert.equal(row.error?.stage, 'upload');
    assert.match(row.error?.reason ?? '', /injected failure/);
    assert.equal(row.error?.code, 'injected_fault');
    assert.equal(row.error?.errorClass, 'retryable');
    assert.equal(row.error?.attempts, 3);
    assert.equal(row.stages.upload, 'failed');
    assert.equal(row.stages.frame, 'done');

    const mine = forPhoto(await waitDeadLetters(stack, 'upload', [id]), id);
    assert.equal(mine.length, 1, 'exactly one dead letter');
    const h = mine[0]!.headers;
    assert.equal(h['x-attempts'], 3);
    assert.equal(h['x-stage'], 'upload');
    assert.equal(h['x-error-class'], 'retryable');
    assert.equal(h['x-error-code'], 'injected_fault');
    assert.match(String(h['x-reason']), /injected failure \(always\)/);
    assert.equal(h['x-original-routing-key'], 'upload');
    const first = Date.parse(assertIso(h['x-first-failure-at'], 'x-first-failure-at'));
    const last = Date.parse(assertIso(h['x-last-failure-at'], 'x-last-failure-at'));
    assert.ok(last > first, 'three failures spread over the retry delays');

    const lines = await waitFor(
      'upload log lines',
      async () => {
        const l = logLines<LogLine>(stack, logName).filter((x) => x.photoId === id && x.stage === 'upload');
        return l.some((x) => x.msg.startsWith('stage failed: gave up')) ? l : null;
      },
      10_000,
    );
    assert.deepEqual(lines.filter((x) => x.msg === 'stage failed; scheduling retry').map((x) => x.attempt), [1, 2]);
    assert.deepEqual(lines.filter((x) => x.msg.startsWith('stage failed: gave up after 3 attempts')).map((x) => x.attempt), [3]);
    assert.equal((await stack.queueStats(stack.queue('upload'))).messageCount, 0);
  });

  it('dead-letters malformed messages with the reason, once each, and keeps consuming', async () => {
    const logName = await startWorker('malformed');
    const lettersBefore = (await deadLetters(stack, 'exif')).length;
    const unknownId = randomUUID();
    const marker = randomUUID();
    const bodies = {
      notJson: Buffer.from(`{"v":1,"photoId": oops ${marker}`),
      badSchema: Buffer.from(JSON.stringify({ v: 2, photoId: 'not-a-uuid', tenantId: '', marker })),
      unknownPhoto: Buffer.from(JSON.stringify({ v: 1, photoId: unknownId, tenantId: stack.tenant, rawKey: `${stack.config.REDIS_KEY_PREFIX}blob:${unknownId}:raw` })),
    };
    await stack.amqp(async (ch) => {
      for (const body of Object.values(bodies)) ch.publish(stack.config.AMQP_PREFIX, 'exif', body, { persistent: true, contentType: 'application/json' });
      // A round trip on the same channel makes sure the broker has routed the publishes.
      await ch.checkQueue(stack.queue('exif'));
    });

    const letters = await waitFor(
      'three dead letters in exif',
      async () => {
        const l = await deadLetters(stack, 'exif');
        return l.length >= lettersBefore + 3 ? l.slice(lettersBefore) : null;
      },
      30_000,
      250,
    );
    const byBody = (b: Buffer) => letters.filter((l) => l.body === b.toString('utf8'));
    const expected: Record<keyof typeof bodies, { code: string; reason: RegExp }> = {
      notJson: { code: 'malformed_message', reason: /malformed message: body is not valid JSON/ },
      badSchema: { code: 'malformed_message', reason: /malformed message: .*v: .*photoId: .*tenantId/s },
      unknownPhoto: { code: 'unknown_photo', reason: new RegExp(`no photo ${unknownId}`) },
    };
    for (const [k, body] of Object.entries(bodies) as [keyof typeof bodies, Buffer][]) {
      const mine = byBody(body);
      assert.equal(mine.length, 1, `${k}: exactly one dead letter`);
      const h = mine[0]!.headers;
      assert.equal(h['x-stage'], 'exif');
      assert.equal(h['x-error-class'], 'permanent');
      assert.equal(h['x-error-code'], expected[k].code, k);
      assert.match(String(h['x-reason']), expected[k].reason, k);
      assert.equal(h['x-attempts'], 1);
    }

    // The worker is alive and still consumes: a normal photo goes through every stage.
    assert.ok(worker?.running, 'worker still running');
    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0027.jpg'), `after-malformed-${marker}`));
    assert.equal(await stack.waitFinal(id, 60_000), 'complete');
    assert.ok(worker?.running, 'worker still running after the good photo');
    // Nothing looped back: still exactly the three dead letters, and the work queue is drained.
    assert.equal((await deadLetters(stack, 'exif')).length, lettersBefore + 3);
    const q = await stack.queueStats(stack.queue('exif'));
    assert.equal(q.messageCount, 0);
    assert.equal(q.consumerCount, 1);
    const warned = logLines<LogLine>(stack, logName).filter((x) => x.msg === 'malformed message: dead-lettering');
    assert.equal(warned.length, 2, 'each malformed message was handled once');
  });

  it('times out a hung handler, retries it and fails its photo, while the other photos in flight complete', async () => {
    // The hang is injected for one tenant's photos only; another tenant's photos share the same
    // worker, the same thumbnail consumer and its two prefetch slots.
    const hungTenant = `t_hang_${randomUUID().slice(0, 8)}`;
    const hungKey = (await new ApiKeyRepo(stack.db).create(hungTenant)).key;
    const logName = await startWorker('hang', { PHOTOPIPE_TEST_FAULTS: JSON.stringify({ thumbnail: { hang: true, tenant: hungTenant } }) });
    const uploadAs = async (key: string, file: string, i: number): Promise<string> => {
      const res = await stack.upload(distinctJpeg(photo(file), `hang-${i}-${randomUUID()}`), { key });
      assert.equal(res.status, 202);
      return ((await res.json()) as { id: string }).id;
    };
    const hung: string[] = [];
    const healthy: string[] = [];
    const files = ['jpg/gps/DSCN0029.jpg', 'jpg/exif-org/nikon-e950.jpg', 'jpg/exif-org/canon-ixus.jpg', 'jpg/exif-org/kodak-dc240.jpg', 'jpg/gps/DSCN0040.jpg'];
    for (const [i, f] of files.entries()) {
      if (i < 2) hung.push(await uploadAs(hungKey, f, i));
      healthy.push(await uploadAs(stack.apiKey, f, i));
    }
    const states = await stack.waitAllFinal([...hung, ...healthy], 60_000);
    for (const id of healthy) assert.equal(states.get(id), 'complete', `healthy photo ${id}`);
    const letters = await waitDeadLetters(stack, 'thumbnail', hung);
    for (const id of hung) {
      assert.equal(states.get(id), 'failed');
      const row = await failedRow(stack, id);
      assert.equal(row.error?.stage, 'thumbnail');
      assert.equal(row.error?.code, 'timeout');
      assert.match(row.error?.reason ?? '', /timeout in thumbnail after 1500 ms/);
      assert.equal(row.error?.attempts, 2);
      const mine = forPhoto(letters, id);
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.headers['x-attempts'], 2);
      assert.equal(mine[0]!.headers['x-error-code'], 'timeout');
      assert.match(String(mine[0]!.headers['x-last-error']), /timeout in thumbnail after 1500 ms/, 'the last error travelled with the retry');
    }
    // The healthy photos did not wait for the hung ones to give up: the first of them completed
    // while a hung handler was still being retried.
    const { rows } = await stack.db.query(
      `SELECT (SELECT min(completed_at) FROM photos WHERE id = ANY($1::uuid[])) < (SELECT max(updated_at) FROM photos WHERE id = ANY($2::uuid[])) AS overlapped`,
      [healthy, hung],
    );
    assert.equal(rows[0].overlapped, true, 'healthy photos completed while hung ones were in flight');

    const lines = logLines<LogLine>(stack, logName).filter((x) => x.stage === 'thumbnail' && x.photoId && hung.includes(x.photoId));
    assert.equal(lines.filter((x) => x.msg === 'stage failed; scheduling retry').length, 2, 'one retry per hung photo');
    assert.equal(lines.filter((x) => x.msg.startsWith('stage failed: gave up after 2 attempts')).length, 2);
    assert.equal(lines.filter((x) => x.msg.startsWith('handler ignored its deadline')).length, 4, 'each overrun is reported');
    assert.equal((await stack.queueStats(stack.queue('thumbnail'))).messageCount, 0);
    assert.ok(worker?.running, 'the worker survived its hung handlers');
  });

  it('a worker whose handlers keep ignoring their deadline settles their messages, then stops with exit 1 to be replaced', async () => {
    // Prefetch 2: the process gives up after max(8, 4 x 2) = 8 abandoned handlers, i.e. 4 photos x 2 attempts.
    const logName = await startWorker('hang-all', { PHOTOPIPE_TEST_FAULTS: JSON.stringify({ thumbnail: { hang: true } }) });
    const files = ['jpg/gps/DSCN0029.jpg', 'jpg/exif-org/nikon-e950.jpg', 'jpg/exif-org/canon-ixus.jpg', 'jpg/exif-org/kodak-dc240.jpg'];
    const ids = await Promise.all(files.map((f, i) => stack.uploadOk(distinctJpeg(photo(f), `hang-all-${i}-${randomUUID()}`))));
    const states = await stack.waitAllFinal(ids, 60_000);
    for (const id of ids) assert.equal(states.get(id), 'failed');
    await waitDeadLetters(stack, 'thumbnail', ids);
    const proc = worker!;
    worker = null; // it stops by itself; afterEach expects a SIGTERM exit
    const exit = await Promise.race([proc.exited, new Promise<null>((r) => setTimeout(() => r(null), 30_000))]);
    assert.deepEqual(exit, { code: 1, signal: null }, 'the worker stopped itself with exit code 1');
    const fatal = logLines<LogLine & { count?: number }>(stack, logName).filter((x) => x.msg.startsWith('too many handlers ignored their deadline'));
    assert.equal(fatal.length, 1);
    assert.ok((fatal[0]!.count ?? 0) >= 8);
    // Every message was settled before the stop: nothing waits in the queue to be redone.
    assert.equal((await stack.queueStats(stack.queue('thumbnail'))).messageCount, 0);
    await waitFor('consumers gone', async () => (await stack.queueStats(stack.queue('thumbnail'))).consumerCount === 0, 30_000, 200);
  });
});
