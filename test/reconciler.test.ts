import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { reconcileOnce, type ReconcileReport } from '../src/reconciler/reconciler.js';
import { Broker } from '../src/queues/broker.js';
import { buildTopology } from '../src/queues/topology.js';
import { photoRepos } from '../src/db/photos/index.js';
import { BlobStore } from '../src/shared/blob-store.js';
import { createLogger } from '../src/shared/logger.js';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { exitWithin, logLines } from './helpers/logs.js';
import { Stack, waitFor, type Proc } from './helpers/stack.js';

/**
 * The stuck-work reconciler on real services. A photo loses its in-flight message (the frame
 * queue is purged while no frame worker runs): `photopipe reconcile` finds it once it has made no
 * progress for the threshold and republishes the frame message, and the photo completes. A dry
 * run publishes nothing; recent photos and photos whose stage queue still holds a backlog are left
 * alone; the `reconciler` role does the same periodically, one instance per pass (Redis lock).
 */

interface LogLine {
  msg?: string;
  examined?: number;
  republished?: number;
  deferred?: number;
  [key: string]: unknown;
}

const byId = (a: { photoId: string }, b: { photoId: string }) => a.photoId.localeCompare(b.photoId);

describe('stuck-work reconciler', () => {
  let stack: Stack;
  let frameWorker: Proc | null = null;
  let runs = 0;
  let uploads = 0;
  const JPEG = photo('jpg/Canon_PowerShot_S40.jpg');

  before(async () => {
    // Every role but frame: frame messages wait in their queue until a test starts a frame worker.
    stack = await Stack.start({ workers: 'none' });
    await stack.startWorkers(['ingest', 'exif', 'geocode', 'thumbnail', 'upload']);
  });

  after(async () => {
    await stack?.stop();
  });

  const frameDepth = async () => (await stack.queueStats(stack.queue('frame'))).messageCount;

  async function row(id: string): Promise<{ status: string; stages: Record<string, string>; progressed_at: Date }> {
    const { rows } = await stack.db.query(`SELECT status, stages, progressed_at FROM photos WHERE id = $1`, [id]);
    assert.ok(rows[0], `photo ${id} exists`);
    return rows[0];
  }

  /** Uploads photos and waits until each waits only for frame, its frame message ready in the queue. */
  async function waitingForFrame(n: number): Promise<string[]> {
    const before = await frameDepth();
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(await stack.uploadOk(distinctJpeg(JPEG, `${stack.name}-${uploads++}`)));
    for (const id of ids) {
      await waitFor(
        `photo ${id} to wait for frame only`,
        async () => {
          const r = await row(id);
          return r.status === 'processing' && r.stages.frame === 'pending' && r.stages.exif === 'done' && r.stages.thumbnail === 'done';
        },
        60_000,
        150,
      );
    }
    await waitFor(`${n} more frame messages in the queue`, async () => (await frameDepth()) === before + n, 30_000);
    return ids;
  }

  /** Loses the photos' in-flight frame messages, as a broker losing a non-replicated queue would. */
  async function purgeFrameQueue(expected: number): Promise<void> {
    const { messageCount } = await stack.amqp((ch) => ch.purgeQueue(stack.queue('frame')));
    assert.equal(messageCount, expected, 'purged the messages');
    assert.equal(await frameDepth(), 0);
  }

  /** Runs `photopipe reconcile ARGS` once and returns the report it prints. */
  async function reconcile(args: string[]): Promise<ReconcileReport> {
    const p = stack.spawnCli(`reconcile-${++runs}`, ['reconcile', ...args]);
    let out = '';
    p.child.stdout?.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const res = await exitWithin(p, 60_000);
    assert.equal(res.code, 0, `reconcile ${args.join(' ')} exited ${res.code}; see ${stack.name}-reconcile-${runs}.log`);
    return JSON.parse(out) as ReconcileReport;
  }

  async function staleFor(ids: string[], ms: number): Promise<void> {
    await waitFor(
      `photos without progress for ${ms} ms`,
      async () => {
        const { rows } = await stack.db.query(`SELECT bool_and(progressed_at < now() - $2::int * interval '1 millisecond') AS stale FROM photos WHERE id = ANY($1::uuid[])`, [ids, ms]);
        return rows[0].stale === true;
      },
      30_000,
      100,
    );
  }

  let lost: string[] = []; // photos whose frame message was purged

  it('leaves photos that progressed recently alone; a dry run lists stuck photos and publishes nothing', async () => {
    lost = await waitingForFrame(2);
    await purgeFrameQueue(2);

    const recent = await reconcile(['--stale-ms', '600000']);
    assert.deepEqual(recent, { examined: 0, republished: [], deferred: [], dryRun: false }, 'nothing is stale after seconds');
    assert.equal(await frameDepth(), 0);

    await staleFor(lost, 1_500);
    const before = await Promise.all(lost.map(row));
    const dry = await reconcile(['--dry-run', '--stale-ms', '1000']);
    assert.equal(dry.dryRun, true);
    assert.equal(dry.examined, 2);
    assert.deepEqual(
      dry.republished.sort(byId),
      lost.map((photoId) => ({ photoId, stages: ['frame'] })).sort(byId),
      'it lists what it would republish',
    );
    assert.deepEqual(dry.deferred, []);

    // A pass reads every stale photo, a page at a time (pages of one here), so photos deferred
    // behind one stage's backlog never crowd out the others.
    const log = createLogger({ LOG_LEVEL: 'warn' }, { role: 'test' }, 'stderr');
    const broker = new Broker(stack.config, buildTopology(stack.config), log, 'reconciler-test');
    try {
      await broker.waitReady();
      const repos = photoRepos(stack.db);
      const deps = { stale: repos.stale, stages: repos.stages, broker, blobs: new BlobStore(stack.redis, stack.config.REDIS_KEY_PREFIX), log };
      const paged = await reconcileOnce(deps, { staleMs: 1000, dryRun: true, pageSize: 1 });
      assert.equal(paged.examined, 2);
      assert.deepEqual(paged.republished.sort(byId), dry.republished.sort(byId));
    } finally {
      await broker.close();
    }
    assert.equal(await frameDepth(), 0, 'a dry run publishes nothing');
    assert.deepEqual(await Promise.all(lost.map(row)), before, 'and changes no photo');
  });

  it('defers stale photos whose stage queue holds a backlog; a photo still progressing is not listed', async () => {
    const [progressing] = await waitingForFrame(1); // its frame message is ready in the queue
    assert.ok(progressing);
    const [old, other] = lost;
    assert.ok(old && other);
    // One stuck photo made no progress for 15 minutes; the other, for seconds only.
    await stack.db.query(`UPDATE photos SET progressed_at = now() - interval '15 minutes' WHERE id = $1`, [old]);

    const report = await reconcile(['--stale-ms', '600000']);
    assert.deepEqual(report, { examined: 1, republished: [], deferred: [{ photoId: old, stages: ['frame'] }], dryRun: false });
    assert.equal(await frameDepth(), 1, 'only the backlog message is in the queue: nothing was republished');
    assert.equal((await row(progressing)).status, 'processing');

    // A backlog shields a photo for four thresholds at most: on a queue that is never empty, a photo
    // stale for longer is republished anyway (shown by a dry run, which publishes nothing).
    await stack.db.query(`UPDATE photos SET progressed_at = now() - interval '2 hours' WHERE id = $1`, [other]);
    const capped = await reconcile(['--dry-run', '--stale-ms', '600000']);
    assert.deepEqual(capped, { examined: 2, republished: [{ photoId: other, stages: ['frame'] }], deferred: [{ photoId: old, stages: ['frame'] }], dryRun: true });
    assert.equal(await frameDepth(), 1);
  });

  it('republishes the lost message of a stale photo, and the photo completes', async () => {
    frameWorker = await stack.startWorkers(['frame']);
    const progressing = await waitFor('the backlog to drain', async () => {
      const { rows } = await stack.db.query(`SELECT id FROM photos WHERE status = 'complete'`);
      return (await frameDepth()) === 0 && rows.length === 1 ? (rows[0].id as string) : null;
    });
    assert.ok(!lost.includes(progressing));
    for (const id of lost) assert.equal((await row(id)).status, 'processing', 'the lost photos are still stuck');

    await staleFor(lost, 1_500);
    const report = await reconcile(['--stale-ms', '1000']);
    assert.deepEqual(report.republished.sort(byId), lost.map((photoId) => ({ photoId, stages: ['frame'] })).sort(byId));
    assert.deepEqual(report.deferred, []);
    assert.equal(report.dryRun, false);
    const final = await stack.waitAllFinal(lost, 60_000);
    assert.deepEqual([...final.values()], ['complete', 'complete']);
    for (const id of lost) {
      const v = await stack.getPhoto(id);
      assert.equal(v.body.stages.frame, 'done');
      assert.ok(v.body.variants?.framed, 'the framed rendition exists');
    }
    await frameWorker.stop();
    frameWorker = null;
    await waitFor('no frame consumer', async () => (await stack.queueStats(stack.queue('frame'))).consumerCount === 0, 15_000);
  });

  it('the reconciler role heals a stuck photo by itself, one instance per pass (Redis lock)', async () => {
    const [stuck] = await waitingForFrame(1);
    assert.ok(stuck);
    await purgeFrameQueue(1);
    await stack.db.query(`UPDATE photos SET progressed_at = now() - interval '1 hour' WHERE id = $1`, [stuck]);
    const backdated = (await row(stuck)).progressed_at;

    // Another instance holds the lock: the two reconcilers started now must not act while it does.
    const lockKey = `${stack.config.REDIS_KEY_PREFIX}reconciler:lock`;
    assert.equal(await stack.redis.set(lockKey, 'another-instance', 'PX', 120_000, 'NX'), 'OK');
    const env = { RECONCILE_INTERVAL_MS: '1000', RECONCILE_STALE_MS: '2000', LOG_LEVEL: 'debug' };
    const names = ['reconciler-1', 'reconciler-2'];
    const loops = names.map((n) => stack.spawnCli(n, ['reconciler'], env));
    const lines = (msg: string) => names.flatMap((n) => logLines<LogLine>(stack, n).filter((l) => l.msg === msg));
    const SKIPPED = 'another instance holds the reconciler lock: skipping this pass';
    await waitFor(
      'both reconcilers to find the lock taken twice',
      async () => names.every((n) => logLines<LogLine>(stack, n).filter((l) => l.msg === SKIPPED).length >= 2),
      60_000,
      200,
    );
    assert.equal(await frameDepth(), 0, 'nothing published while another instance holds the lock');
    assert.deepEqual(lines('reconciler pass'), []);
    assert.deepEqual((await row(stuck)).progressed_at, backdated);

    await stack.redis.del(lockKey);
    await waitFor('the reconciler to republish the frame message', async () => (await frameDepth()) >= 1, 30_000, 100);
    // Later passes find the photo stale again (2 s) but its message waiting in the queue: deferred.
    await waitFor('two later passes to defer the photo', async () => lines('reconciler pass').filter((l) => l.deferred === 1).length >= 2, 60_000, 200);
    assert.equal(await frameDepth(), 1, 'exactly one message was republished');
    const republishing = lines('reconciler pass').filter((l) => (l.republished ?? 0) > 0);
    assert.equal(republishing.length, 1, 'one pass of one instance republished it');
    assert.deepEqual([republishing[0]?.examined, republishing[0]?.republished, republishing[0]?.deferred], [1, 1, 0]);

    frameWorker = await stack.startWorkers(['frame']);
    assert.equal(await stack.waitFinal(stuck, 60_000), 'complete');
    for (const p of loops) assert.deepEqual(await p.stop(), { code: 0, signal: null });
  });

  it('stops in the middle of a long pass (a large stuck backlog) instead of finishing it first', async () => {
    await frameWorker?.stop();
    frameWorker = null;
    await waitFor('no frame consumer', async () => (await stack.queueStats(stack.queue('frame'))).consumerCount === 0, 15_000);
    const tenant = `bulk_${stack.name.slice(-6)}`;
    const stages = { ingest: 'done', exif: 'done', geocode: 'skipped', frame: 'pending', thumbnail: 'done', upload: 'pending' };
    await stack.db.query(
      `INSERT INTO photos (id, tenant_id, status, stages, progressed_at)
       SELECT gen_random_uuid(), $1, 'processing', $2::jsonb, now() - interval '1 hour' FROM generate_series(1, 3000)`,
      [tenant, JSON.stringify(stages)],
    );
    const loop = stack.spawnCli('reconciler-bulk', ['reconciler'], { RECONCILE_INTERVAL_MS: '1000', RECONCILE_STALE_MS: '2000' });
    await waitFor('the pass to be under way', async () => (await frameDepth()) >= 50, 30_000, 20);
    const t0 = Date.now();
    assert.deepEqual(await loop.stop(), { code: 0, signal: null });
    const tookMs = Date.now() - t0;
    const republished = await frameDepth();
    assert.ok(republished < 3000, `it stopped after ${republished} of 3000 photos`);
    assert.ok(tookMs < 5_000, `stopped ${tookMs} ms after SIGTERM`);
    await stack.amqp((ch) => ch.purgeQueue(stack.queue('frame')));
    await stack.db.query(`DELETE FROM photos WHERE tenant_id = $1`, [tenant]);
  });
});
