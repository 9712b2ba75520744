import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes, randomUUID } from 'node:crypto';
import { STAGES, type StageName } from '../src/shared/config.js';
import { Broker } from '../src/queues/broker.js';
import { DlqService, dlqBrowseLock } from '../src/queues/dlq-service.js';
import type { DlqEntry } from '../src/queues/dlq-service.js';
import { buildTopology } from '../src/queues/topology.js';
import { createLogger } from '../src/shared/logger.js';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { logLines } from './helpers/logs.js';
import { freePort, Stack, waitFor, type Proc } from './helpers/stack.js';

/**
 * Operator tooling for dead letters on real services: `photopipe dlq list|show|replay|purge` run
 * as child processes with the stack's environment, and the admin HTTP API behind ADMIN_API_KEY.
 */

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'photopipe.js');

interface DlqListJson {
  counts: Record<StageName, number>;
  items: DlqEntry[];
}
interface ReplayJson {
  replayed: { id: string; stage: StageName; photoId: string | null }[];
  skipped: { id: string; reason: string }[];
}

interface LogLine {
  msg: string;
  stage?: string;
  photoId?: string;
  attempt?: number;
}

const stageDone = (stack: Stack, procName: string, photoId: string, stage: StageName) =>
  logLines<LogLine>(stack, procName).filter((l) => l.msg === 'stage done' && l.photoId === photoId && l.stage === stage);

/** Runs `photopipe <args>` the way an operator would, with the stack's environment. */
function cli(stack: Stack, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...stack.env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function cliJson<T>(stack: Stack, args: string[]): Promise<T> {
  const r = await cli(stack, args);
  assert.equal(r.code, 0, `photopipe ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

describe('dead-letter tools: CLI and admin API', () => {
  let stack: Stack;
  let uploadWorker: Proc;
  let adminUrl = '';
  const adminKey = randomBytes(16).toString('hex'); // 32 characters
  const ids: string[] = [];
  const pre = 'worker-pre'; // ingest, exif, geocode, frame, thumbnail in one process
  let malformedBody = '';
  /** The first full listing, reused by later tests (each CLI run costs seconds on the shared machine). */
  let listed: DlqListJson;

  before(async () => {
    // The stack's own API runs without ADMIN_API_KEY (admin API disabled); a second API has it.
    stack = await Stack.start({ workers: 'none', env: { STAGE_MAX_ATTEMPTS: 'upload=2' } });
    stack.spawnCli(pre, ['worker', '--role', 'ingest,exif,geocode,frame,thumbnail']);
    await stack.waitForConsumers(['ingest', 'exif', 'geocode', 'frame', 'thumbnail'], 1);
    uploadWorker = stack.spawnCli('worker-upload-faulty', ['worker', '--role', 'upload'], { PHOTOPIPE_TEST_FAULTS: JSON.stringify({ upload: { always: true } }) });
    await stack.waitForConsumers(['upload'], 1);

    const port = await freePort();
    adminUrl = `http://127.0.0.1:${port}`;
    stack.spawnCli('api-admin', ['api'], { PORT: String(port), ADMIN_API_KEY: adminKey });
    await waitFor('admin API /healthz', async () => (await fetch(`${adminUrl}/healthz`).catch(() => null))?.ok, 30_000);

    // Three photos that fail in upload (2 attempts), and one malformed message dead-lettered in exif.
    for (const f of ['jpg/gps/DSCN0010.jpg', 'jpg/gps/DSCN0012.jpg', 'jpg/exif-org/canon-ixus.jpg']) {
      ids.push(await stack.uploadOk(distinctJpeg(photo(f), `dlq-${randomUUID()}`)));
    }
    malformedBody = `not json ${randomUUID()}`;
    await stack.amqp(async (ch) => {
      ch.publish(stack.config.AMQP_PREFIX, 'exif', Buffer.from(malformedBody), { persistent: true });
      await ch.checkQueue(stack.queue('exif'));
    });
    const states = await stack.waitAllFinal(ids, 90_000);
    assert.deepEqual([...states.values()], ['failed', 'failed', 'failed']);
    await waitFor(
      'four dead letters',
      async () => (await stack.queueStats(stack.dlq('upload'))).messageCount === 3 && (await stack.queueStats(stack.dlq('exif'))).messageCount === 1,
      20_000,
      250,
    );
  });

  after(async () => {
    await stack?.stop();
  });

  it('dlq list shows every dead letter with its failure, and leaves the queues as they were', async () => {
    // A usage error never touches the broker, so it can run alongside; two browses at once could not.
    const [all, bogus] = await Promise.all([cliJson<DlqListJson>(stack, ['dlq', 'list']), cli(stack, ['dlq', 'list', '--stage', 'nosuchstage'])]);
    listed = all;
    assert.equal(bogus.code, 2);
    assert.match(bogus.stderr, /unknown role "nosuchstage"/);
    assert.deepEqual(all.counts, { ...Object.fromEntries(STAGES.map((s) => [s, 0])), exif: 1, upload: 3 });
    assert.equal(all.items.length, 4);

    const uploads = all.items.filter((i) => i.stage === 'upload');
    assert.deepEqual(uploads.map((i) => i.photoId).sort(), [...ids].sort());
    for (const item of uploads) {
      assert.equal(item.tenantId, stack.tenant);
      assert.equal(item.errorClass, 'retryable');
      assert.equal(item.code, 'injected_fault');
      assert.match(item.reason, /injected failure/);
      assert.equal(item.attempts, 2);
      assert.equal(item.originalRoutingKey, 'upload');
      assert.ok(item.firstFailureAt && item.lastFailureAt && item.deadLetteredAt);
      assert.ok(Date.parse(item.lastFailureAt) >= Date.parse(item.firstFailureAt));
      const body = item.body as { cid?: unknown };
      assert.match(String(body.cid), /^[0-9a-f-]{36}$/, 'the correlation id travels with the message');
      assert.deepEqual(body, { v: 1, photoId: item.photoId, tenantId: stack.tenant, cid: body.cid });
      assert.match(item.id, /^[0-9a-f-]{36}$/);
    }
    const bad = all.items.find((i) => i.stage === 'exif');
    assert.ok(bad);
    assert.equal(bad.code, 'malformed_message');
    assert.match(bad.reason, /not valid JSON/);
    assert.equal(bad.photoId, null);
    assert.equal(bad.body, malformedBody);

    // --stage takes a queue name as well as a role name.
    const limited = await cliJson<DlqListJson>(stack, ['dlq', 'list', '--stage', `${stack.config.AMQP_PREFIX}.upload`, '--limit', '2']);
    assert.equal(limited.items.length, 2);
    assert.ok(limited.items.every((i) => i.stage === 'upload'));

    // Browsing consumed nothing, and the letters are ready again by the time the command exits.
    assert.equal((await stack.queueStats(stack.dlq('upload'))).messageCount, 3);
    assert.equal((await stack.queueStats(stack.dlq('exif'))).messageCount, 1);
  });

  it('a browse hands its letters back before it returns, so counts and replays right after it see them all', async () => {
    // Quorum queues re-queue the letters of a closed channel asynchronously; without waiting for
    // that, a count or a replay straight after a listing missed letters (seen in the admin API).
    const log = createLogger({ LOG_LEVEL: 'warn' }, { role: 'test' }, 'stderr');
    const broker = new Broker(stack.config, buildTopology(stack.config), log, 'dlq-tools-test');
    try {
      await broker.waitReady();
      const dlq = new DlqService(broker, async () => null, dlqBrowseLock(stack.config, stack.redis));
      for (let i = 0; i < 10; i++) {
        assert.equal((await dlq.list({ stage: 'upload' })).length, 3, `round ${i}: listing`);
        assert.equal(await broker.queueDepth(stack.dlq('upload')), 3, `round ${i}: depth right after the listing`);
      }
      // Browses from several processes at once (an admin dashboard and an operator's CLI) take
      // turns: none of them finds the letters taken by another.
      const other = new DlqService(broker, async () => null, dlqBrowseLock(stack.config, stack.redis));
      const together = await Promise.all([dlq.list({ stage: 'upload' }), other.list({ stage: 'upload' }), dlq.list({ stage: 'upload' }), other.list({ stage: 'upload' })]);
      assert.deepEqual(together.map((l) => l.length), [3, 3, 3, 3]);
    } finally {
      await broker.close();
    }
  });

  it('dlq show prints one dead letter by id, and exits 2 for an unknown id', async () => {
    const first = listed.items.find((i) => i.stage === 'upload')!;
    const [shown, noId] = await Promise.all([cliJson<DlqEntry>(stack, ['dlq', 'show', first.id]), cli(stack, ['dlq', 'show'])]);
    assert.deepEqual(shown, first);
    assert.equal(noId.code, 2);
    const missing = await cli(stack, ['dlq', 'show', randomUUID()]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no dead letter with id/);
  });

  it('dlq replay ID reopens the photo and re-runs only the failed stage, with a fresh attempt count', async () => {
    // Take the faulty upload worker away first, so the reopened state can be observed.
    assert.equal((await uploadWorker.stop()).code, 0);
    await waitFor('no upload consumer', async () => (await stack.queueStats(stack.queue('upload'))).consumerCount === 0, 20_000);

    const target = ids[0]!;
    const entry = listed.items.find((i) => i.photoId === target);
    assert.ok(entry);
    const unknownId = randomUUID();
    const result = await cliJson<ReplayJson>(stack, ['dlq', 'replay', entry.id, unknownId]);
    assert.deepEqual(result.replayed, [{ id: entry.id, stage: 'upload', photoId: target }]);
    assert.deepEqual(result.skipped, [{ id: unknownId, reason: 'not found in any dead-letter queue' }]);

    // The photo is processing again with upload pending; the message waits in the upload queue.
    const { rows } = await stack.db.query(`SELECT status, error, stages FROM photos WHERE id = $1`, [target]);
    assert.equal(rows[0].status, 'processing');
    assert.equal(rows[0].error, null);
    assert.equal(rows[0].stages.upload, 'pending');
    assert.equal(rows[0].stages.frame, 'done');
    assert.equal((await stack.queueStats(stack.dlq('upload'))).messageCount, 2);
    assert.equal((await stack.queueStats(stack.queue('upload'))).messageCount, 1);

    // A healthy upload worker finishes it.
    stack.spawnCli('worker-upload-fixed', ['worker', '--role', 'upload']);
    await stack.waitForConsumers(['upload'], 1);
    assert.equal(await stack.waitFinal(target, 60_000), 'complete');
    const view = await stack.getPhoto(target);
    assert.equal(view.body.error, null);
    assert.ok(view.body.variants?.framed && view.body.variants.thumbnail && view.body.variants.original);
    const variants = await stack.db.query(`SELECT kind FROM photo_variants WHERE photo_id = $1 ORDER BY kind`, [target]);
    assert.deepEqual(variants.rows.map((r) => r.kind), ['framed', 'original', 'thumbnail']);

    // The stages that had succeeded did not run again; upload ran once more, as attempt 1.
    const uploadDone = await waitFor('upload stage done line', async () => {
      const l = stageDone(stack, 'worker-upload-fixed', target, 'upload');
      return l.length > 0 ? l : null;
    });
    assert.deepEqual(uploadDone.map((l) => l.attempt), [1]);
    for (const s of ['ingest', 'exif', 'frame', 'thumbnail'] as const) assert.equal(stageDone(stack, pre, target, s).length, 1, `${s} ran once`);
    assert.equal((await stack.queueStats(stack.dlq('upload'))).messageCount, 2);
  });

  it('the admin API is 404 without ADMIN_API_KEY, 401 without or with a wrong key, and lists and replays with it', async () => {
    const disabled = await fetch(`${stack.apiUrl}/v1/admin/dlq`, { headers: { authorization: `Bearer ${adminKey}` } });
    assert.equal(disabled.status, 404);
    assert.equal(((await disabled.json()) as { error: { code: string } }).error.code, 'not_found');

    const noKey = await fetch(`${adminUrl}/v1/admin/dlq`);
    assert.equal(noKey.status, 401);
    assert.equal(((await noKey.json()) as { error: { code: string } }).error.code, 'unauthorized');
    const wrong = await fetch(`${adminUrl}/v1/admin/dlq`, { headers: { authorization: `Bearer ${'x'.repeat(32)}` } });
    assert.equal(wrong.status, 401);
    // A tenant's API key is not an admin key.
    const tenantKey = await fetch(`${adminUrl}/v1/admin/dlq`, { headers: { authorization: `Bearer ${stack.apiKey}` } });
    assert.equal(tenantKey.status, 401);
    const replayNoKey = await fetch(`${adminUrl}/v1/admin/dlq/replay`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ stage: 'upload' }) });
    assert.equal(replayNoKey.status, 401);
    assert.equal((await stack.queueStats(stack.dlq('upload'))).messageCount, 2, 'a refused replay changed nothing');

    const auth = { authorization: `Bearer ${adminKey}` };
    const listed = await fetch(`${adminUrl}/v1/admin/dlq?stage=upload&limit=10`, { headers: auth });
    assert.equal(listed.status, 200);
    const body = (await listed.json()) as DlqListJson;
    assert.equal(body.counts.upload, 2);
    assert.equal(body.counts.exif, 1);
    assert.deepEqual(body.items.map((i) => i.photoId).sort(), ids.slice(1).sort());
    assert.ok(body.items.every((i) => i.code === 'injected_fault' && i.attempts === 2));

    // Back-to-back listings see the same letters: each browse hands its letters back before answering
    // (quorum queues return them asynchronously, which once made a list-then-replay miss letters).
    for (let i = 0; i < 5; i++) {
      const again = (await (await fetch(`${adminUrl}/v1/admin/dlq?stage=upload`, { headers: auth })).json()) as DlqListJson;
      assert.equal(again.counts.upload, 2, `listing ${i}: counts`);
      assert.equal(again.items.length, 2, `listing ${i}: items`);
    }

    const badQuery = await fetch(`${adminUrl}/v1/admin/dlq?stage=nosuch`, { headers: auth });
    assert.equal(badQuery.status, 400);
    const badBody = await fetch(`${adminUrl}/v1/admin/dlq/replay`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ stage: 'nosuch' }) });
    assert.equal(badBody.status, 400);
    assert.equal(((await badBody.json()) as { error: { code: string } }).error.code, 'invalid_body');

    const replay = await fetch(`${adminUrl}/v1/admin/dlq/replay`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ stage: 'upload' }) });
    assert.equal(replay.status, 200);
    const r = (await replay.json()) as ReplayJson;
    assert.deepEqual(r.replayed.map((x) => x.photoId).sort(), ids.slice(1).sort());
    assert.deepEqual(r.skipped, []);
    const states = await stack.waitAllFinal(ids, 60_000);
    assert.deepEqual([...states.values()], ['complete', 'complete', 'complete']);
    assert.equal((await stack.queueStats(stack.dlq('upload'))).messageCount, 0);
    for (const id of ids.slice(1)) {
      for (const s of ['frame', 'thumbnail'] as const) assert.equal(stageDone(stack, pre, id, s).length, 1, `${s} ran once for ${id}`);
      const { rows } = await stack.db.query(`SELECT count(*)::int AS n FROM photo_variants WHERE photo_id = $1`, [id]);
      assert.equal(rows[0].n, 3);
    }
  });

  it('dlq replay --stage skips what cannot be replayed, and dlq purge needs --yes', async () => {
    // Only the replay browses; the usage errors can run alongside it.
    const [r, noStage, unconfirmed] = await Promise.all([
      cliJson<ReplayJson>(stack, ['dlq', 'replay', '--stage', 'exif']),
      cli(stack, ['dlq', 'replay']),
      cli(stack, ['dlq', 'purge', '--stage', 'exif']),
    ]);
    assert.deepEqual(r.replayed, []);
    assert.equal(r.skipped.length, 1);
    assert.match(r.skipped[0]!.reason, /malformed message: body is not valid JSON/);
    assert.equal((await stack.queueStats(stack.dlq('exif'))).messageCount, 1, 'the malformed letter stays');

    assert.equal(noStage.code, 2);
    assert.equal(unconfirmed.code, 2);
    assert.match(unconfirmed.stderr, /--yes/);
    assert.equal((await stack.queueStats(stack.dlq('exif'))).messageCount, 1);

    const purged = await cliJson<{ purged: number }>(stack, ['dlq', 'purge', '--stage', 'exif', '--yes']);
    assert.deepEqual(purged, { purged: 1 });
    assert.equal((await stack.queueStats(stack.dlq('exif'))).messageCount, 0);
    for (const s of ['ingest', 'exif', 'geocode', 'frame', 'thumbnail', 'upload'] as const) assert.equal((await stack.queueStats(stack.dlq(s))).messageCount, 0, `${s} DLQ empty`);
  });
});
