import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { photoRepos, type PhotoRepos } from '../src/db/photos/index.js';
import { jsonb } from '../src/db/photos/stage-columns.js';
import { migrate } from '../src/db/migrate.js';
import { createLogger } from '../src/shared/logger.js';
import { dropDatabase } from './helpers/stack.js';

/** Photo state under concurrency, on a real Postgres database of its own. */
describe('photo repositories (Postgres)', () => {
  const dbName = `pp_repo_${Date.now().toString(36)}`;
  const url = `postgres://postgres@127.0.0.1:5432/${dbName}`;
  let pool: pg.Pool;
  let repo: PhotoRepos;

  before(async () => {
    await migrate(url, createLogger({ LOG_LEVEL: 'warn' }, {}, 'stderr'));
    pool = new pg.Pool({ connectionString: url, max: 20 });
    repo = photoRepos(pool);
  });

  after(async () => {
    await pool.end();
    await dropDatabase(dbName);
  });

  // Every write names the photo's tenant: remember whose each test photo is.
  const tenants = new Map<string, string>();
  const r = (photoId: string) => ({ photoId, tenantId: tenants.get(photoId) ?? 'nobody' });
  const insert = (id: string, tenantId: string) => {
    tenants.set(id, tenantId);
    return repo.intake.insertQueued({ id, tenantId, originalName: null, contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
  };

  async function ingested(tenant: string): Promise<string> {
    const id = randomUUID();
    await insert(id, tenant);
    await repo.claims.claim(r(id), randomUUID().replace(/-/g, '').padEnd(64, '0'), { format: 'jpeg', width: 1, height: 1, bytes: 1 });
    // What the runner records for an upload when ingest finishes: the batch stages are skipped.
    await repo.stages.completeStage(r(id), 'ingest', { skip: ['convert', 'store'] });
    return id;
  }

  it('never loses a stage when stages finish at the same moment, and completes exactly once', async () => {
    const ids = await Promise.all(Array.from({ length: 30 }, () => ingested('t1')));
    for (const id of ids) {
      await repo.stages.completeStage(r(id), 'upload');
      const results = await Promise.all([
        repo.stages.completeStage(r(id), 'frame'),
        repo.stages.completeStage(r(id), 'thumbnail'),
        repo.stages.completeStage(r(id), 'exif', { skip: ['geocode'], columns: { exif: jsonb({ make: 'x' }) } }),
      ]);
      const row = await repo.reads.get(id);
      assert.deepEqual(row?.stages, { ingest: 'done', exif: 'done', geocode: 'skipped', frame: 'done', thumbnail: 'done', upload: 'done', convert: 'skipped', store: 'skipped' });
      assert.equal(row?.status, 'complete');
      assert.equal(results.filter((r) => r?.justCompleted).length, 1, 'exactly one finisher sees the completion');
    }
  });

  it('lets exactly one of many concurrent claims of the same content win', async () => {
    const sha = 'a'.repeat(64);
    const ids = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const id = randomUUID();
        await insert(id, 't2');
        return id;
      }),
    );
    const outcomes = await Promise.all(ids.map((id) => repo.claims.claim(r(id), sha, { format: 'jpeg', width: 1, height: 1, bytes: 1 })));
    const winners = ids.filter((_, i) => outcomes[i]?.duplicateOf === null);
    assert.equal(winners.length, 1);
    assert.ok(outcomes.every((o) => o?.duplicateOf === null || o?.duplicateOf === winners[0]));
    // Re-running the winner's claim (a redelivered message) changes nothing.
    assert.deepEqual(await repo.claims.claim(r(winners[0]!), sha, { format: 'jpeg', width: 1, height: 1, bytes: 1 }), { duplicateOf: null });
    // The same bytes from another tenant are not a duplicate.
    const other = randomUUID();
    await insert(other, 't3');
    assert.deepEqual(await repo.claims.claim(r(other), sha, { format: 'jpeg', width: 1, height: 1, bytes: 1 }), { duplicateOf: null });
  });

  it('keeps a completed photo complete when a late failure is recorded', async () => {
    const id = await ingested('t4');
    for (const s of ['exif', 'frame', 'thumbnail', 'upload'] as const) await repo.stages.completeStage(r(id), s, s === 'exif' ? { skip: ['geocode'] } : {});
    assert.equal(await repo.stages.recordFailure(r(id), { stage: 'frame', reason: 'late', code: 'x', errorClass: 'retryable', attempts: 1 }), 'moot');
    assert.equal((await repo.reads.get(id))?.status, 'complete');
    assert.equal(await repo.stages.recordFailure(r(randomUUID()), { stage: 'frame', reason: 'x', code: 'x', errorClass: 'permanent', attempts: 1 }), 'missing');
  });

  const failure = (stage: 'frame' | 'thumbnail' | 'upload') => ({ stage, reason: `${stage} broke`, code: 'x', errorClass: 'permanent', attempts: 1 });

  it('does not let a late failure of a stage that already succeeded fail the photo', async () => {
    const id = await ingested('t5');
    await repo.stages.completeStage(r(id), 'upload');
    // A duplicate upload delivery that lost the race (its blobs were already gone) fails late.
    assert.equal(await repo.stages.recordFailure(r(id), failure('upload')), 'moot');
    const row = await repo.reads.get(id);
    assert.equal(row?.status, 'processing');
    assert.equal(row?.stages.upload, 'done');
    assert.equal(row?.error, null);
  });

  it('keeps a photo failed while another of its stages is still failed, and completes it once both are replayed', async () => {
    const id = await ingested('t6');
    await repo.stages.completeStage(r(id), 'exif', { skip: ['geocode'] });
    assert.equal(await repo.stages.recordFailure(r(id), failure('frame')), 'recorded');
    assert.equal(await repo.stages.recordFailure(r(id), failure('thumbnail')), 'recorded');

    assert.equal(await repo.stages.reopenStage(r(id), 'thumbnail'), 'reopened');
    let row = await repo.reads.get(id);
    assert.equal(row?.status, 'failed', 'frame is still failed: the photo must not sit in processing');
    assert.deepEqual(row?.error, { stage: 'frame', reason: 'still failed: replay its dead letter too' });
    assert.equal(row?.stages.thumbnail, 'pending');
    await repo.stages.completeStage(r(id), 'thumbnail');
    assert.equal((await repo.reads.get(id))?.status, 'failed');

    assert.equal(await repo.stages.reopenStage(r(id), 'frame'), 'reopened');
    row = await repo.reads.get(id);
    assert.equal(row?.status, 'processing');
    assert.equal(row?.error, null);
    await repo.stages.completeStage(r(id), 'frame');
    const done = await repo.stages.completeStage(r(id), 'upload');
    assert.equal(done?.row.status, 'complete');
    assert.equal(done?.justCompleted, true);
    // A stage that succeeded is not reopened.
    assert.equal(await repo.stages.reopenStage(r(id), 'frame'), 'not_reopened');
  });

  it('processes the same bytes uploaded again after a failure, and a later replay of the failed photo makes it a duplicate', async () => {
    const sha = 'b'.repeat(64);
    const file = { format: 'jpeg', width: 1, height: 1, bytes: 1 };
    const first = randomUUID();
    await insert(first, 't7');
    assert.deepEqual(await repo.claims.claim(r(first), sha, file), { duplicateOf: null });
    await repo.stages.completeStage(r(first), 'ingest');
    await repo.stages.recordFailure(r(first), failure('upload'));

    // The client uploads the same photo again: it is not a duplicate of the failure.
    const second = randomUUID();
    await insert(second, 't7');
    assert.deepEqual(await repo.claims.claim(r(second), sha, file), { duplicateOf: null });
    // A third upload is a duplicate of the photo being processed, not of the failed one.
    const third = randomUUID();
    await insert(third, 't7');
    assert.deepEqual(await repo.claims.claim(r(third), sha, file), { duplicateOf: second });

    // Replaying the old failure now would process the content twice: it becomes a duplicate instead.
    assert.equal(await repo.stages.reopenStage(r(first), 'upload'), 'duplicate');
    const row = await repo.reads.get(first);
    assert.equal(row?.status, 'duplicate');
    assert.equal(row?.duplicateOf, second);
    assert.equal(row?.error, null);
  });
  it('lets a late success clear its own failure: the photo completes, or stays failed while another stage is failed', async () => {
    // The failure was recorded, its dead letter could not be published, the message went back to
    // the queue, and the retry succeeded.
    const id = await ingested('t8');
    for (const s of ['exif', 'frame', 'thumbnail'] as const) await repo.stages.completeStage(r(id), s, s === 'exif' ? { skip: ['geocode'] } : {});
    assert.equal(await repo.stages.recordFailure(r(id), failure('upload')), 'recorded');
    assert.equal((await repo.reads.get(id))?.status, 'failed');
    const late = await repo.stages.completeStage(r(id), 'upload');
    assert.equal(late?.row.status, 'complete');
    assert.equal(late?.justCompleted, true);
    assert.equal(late?.row.error, null);

    const two = await ingested('t8');
    await repo.stages.completeStage(r(two), 'exif', { skip: ['geocode'] });
    await repo.stages.recordFailure(r(two), failure('frame'));
    await repo.stages.recordFailure(r(two), failure('thumbnail'));
    const partly = await repo.stages.completeStage(r(two), 'thumbnail');
    assert.equal(partly?.row.status, 'failed', 'frame is still failed');
    assert.deepEqual(partly?.row.error, { stage: 'frame', reason: 'still failed: replay its dead letter too' });
    await repo.stages.completeStage(r(two), 'frame');
    assert.equal((await repo.reads.get(two))?.status, 'processing', 'back to work: upload is still to run');
    assert.equal((await repo.reads.get(two))?.error, null);
  });

  it('writes nothing on another tenant\'s photo, whatever a message says', async () => {
    const id = await ingested('t9');
    const forged = { photoId: id, tenantId: 'attacker' };
    assert.equal(await repo.stages.recordFailure(forged, failure('frame')), 'missing');
    assert.equal(await repo.stages.completeStage(forged, 'frame'), null);
    assert.equal(await repo.stages.markSkipped(forged, ['geocode']), null);
    assert.equal(await repo.claims.claim(forged, 'c'.repeat(64), { format: 'jpeg', width: 1, height: 1, bytes: 1 }), null);
    await repo.variants.upsert(forged, [{ kind: 'framed', s3Key: 'x', url: null, width: 1, height: 1, bytes: 1, contentType: 'image/jpeg' }]);
    const row = await repo.reads.get(id);
    assert.equal(row?.status, 'processing');
    assert.deepEqual(row?.stages, { ingest: 'done', convert: 'skipped', store: 'skipped' });
    assert.equal(row?.error, null);
    assert.deepEqual(await repo.variants.forPhoto(id), []);
  });
});
