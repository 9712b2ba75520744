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

  async function ingested(tenant: string): Promise<string> {
    const id = randomUUID();
    await repo.intake.insertQueued({ id, tenantId: tenant, originalName: null, contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
    await repo.claims.claim(id, randomUUID().replace(/-/g, '').padEnd(64, '0'), { format: 'jpeg', width: 1, height: 1, bytes: 1 });
    await repo.stages.completeStage(id, 'ingest');
    return id;
  }

  it('never loses a stage when stages finish at the same moment, and completes exactly once', async () => {
    const ids = await Promise.all(Array.from({ length: 30 }, () => ingested('t1')));
    for (const id of ids) {
      await repo.stages.completeStage(id, 'upload');
      const results = await Promise.all([
        repo.stages.completeStage(id, 'frame'),
        repo.stages.completeStage(id, 'thumbnail'),
        repo.stages.completeStage(id, 'exif', { skip: ['geocode'], columns: { exif: jsonb({ make: 'x' }) } }),
      ]);
      const row = await repo.reads.get(id);
      assert.deepEqual(row?.stages, { ingest: 'done', exif: 'done', geocode: 'skipped', frame: 'done', thumbnail: 'done', upload: 'done' });
      assert.equal(row?.status, 'complete');
      assert.equal(results.filter((r) => r?.justCompleted).length, 1, 'exactly one finisher sees the completion');
    }
  });

  it('lets exactly one of many concurrent claims of the same content win', async () => {
    const sha = 'a'.repeat(64);
    const ids = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const id = randomUUID();
        await repo.intake.insertQueued({ id, tenantId: 't2', originalName: null, contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
        return id;
      }),
    );
    const outcomes = await Promise.all(ids.map((id) => repo.claims.claim(id, sha, { format: 'jpeg', width: 1, height: 1, bytes: 1 })));
    const winners = ids.filter((_, i) => outcomes[i]?.duplicateOf === null);
    assert.equal(winners.length, 1);
    assert.ok(outcomes.every((o) => o.duplicateOf === null || o.duplicateOf === winners[0]));
    // Re-running the winner's claim (a redelivered message) changes nothing.
    assert.deepEqual(await repo.claims.claim(winners[0]!, sha, { format: 'jpeg', width: 1, height: 1, bytes: 1 }), { duplicateOf: null });
    // The same bytes from another tenant are not a duplicate.
    const other = randomUUID();
    await repo.intake.insertQueued({ id: other, tenantId: 't3', originalName: null, contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
    assert.deepEqual(await repo.claims.claim(other, sha, { format: 'jpeg', width: 1, height: 1, bytes: 1 }), { duplicateOf: null });
  });

  it('keeps a completed photo complete when a late failure is recorded', async () => {
    const id = await ingested('t4');
    for (const s of ['exif', 'frame', 'thumbnail', 'upload'] as const) await repo.stages.completeStage(id, s, s === 'exif' ? { skip: ['geocode'] } : {});
    assert.equal(await repo.stages.recordFailure(id, { stage: 'frame', reason: 'late', code: 'x', errorClass: 'retryable', attempts: 1 }), 'moot');
    assert.equal((await repo.reads.get(id))?.status, 'complete');
    assert.equal(await repo.stages.recordFailure(randomUUID(), { stage: 'frame', reason: 'x', code: 'x', errorClass: 'permanent', attempts: 1 }), 'missing');
  });

  const failure = (stage: 'frame' | 'thumbnail' | 'upload') => ({ stage, reason: `${stage} broke`, code: 'x', errorClass: 'permanent', attempts: 1 });

  it('does not let a late failure of a stage that already succeeded fail the photo', async () => {
    const id = await ingested('t5');
    await repo.stages.completeStage(id, 'upload');
    // A duplicate upload delivery that lost the race (its blobs were already gone) fails late.
    assert.equal(await repo.stages.recordFailure(id, failure('upload')), 'moot');
    const row = await repo.reads.get(id);
    assert.equal(row?.status, 'processing');
    assert.equal(row?.stages.upload, 'done');
    assert.equal(row?.error, null);
  });

  it('keeps a photo failed while another of its stages is still failed, and completes it once both are replayed', async () => {
    const id = await ingested('t6');
    await repo.stages.completeStage(id, 'exif', { skip: ['geocode'] });
    assert.equal(await repo.stages.recordFailure(id, failure('frame')), 'recorded');
    assert.equal(await repo.stages.recordFailure(id, failure('thumbnail')), 'recorded');

    assert.equal(await repo.stages.reopenStage(id, 'thumbnail'), 'reopened');
    let row = await repo.reads.get(id);
    assert.equal(row?.status, 'failed', 'frame is still failed: the photo must not sit in processing');
    assert.deepEqual(row?.error, { stage: 'frame', reason: 'still failed: replay its dead letter too' });
    assert.equal(row?.stages.thumbnail, 'pending');
    await repo.stages.completeStage(id, 'thumbnail');
    assert.equal((await repo.reads.get(id))?.status, 'failed');

    assert.equal(await repo.stages.reopenStage(id, 'frame'), 'reopened');
    row = await repo.reads.get(id);
    assert.equal(row?.status, 'processing');
    assert.equal(row?.error, null);
    await repo.stages.completeStage(id, 'frame');
    const done = await repo.stages.completeStage(id, 'upload');
    assert.equal(done?.row.status, 'complete');
    assert.equal(done?.justCompleted, true);
    // A stage that succeeded is not reopened.
    assert.equal(await repo.stages.reopenStage(id, 'frame'), 'not_reopened');
  });

  it('processes the same bytes uploaded again after a failure, and a later replay of the failed photo makes it a duplicate', async () => {
    const sha = 'b'.repeat(64);
    const file = { format: 'jpeg', width: 1, height: 1, bytes: 1 };
    const first = randomUUID();
    await repo.intake.insertQueued({ id: first, tenantId: 't7', originalName: null, contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
    assert.deepEqual(await repo.claims.claim(first, sha, file), { duplicateOf: null });
    await repo.stages.completeStage(first, 'ingest');
    await repo.stages.recordFailure(first, failure('upload'));

    // The client uploads the same photo again: it is not a duplicate of the failure.
    const second = randomUUID();
    await repo.intake.insertQueued({ id: second, tenantId: 't7', originalName: null, contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
    assert.deepEqual(await repo.claims.claim(second, sha, file), { duplicateOf: null });
    // A third upload is a duplicate of the photo being processed, not of the failed one.
    const third = randomUUID();
    await repo.intake.insertQueued({ id: third, tenantId: 't7', originalName: null, contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
    assert.deepEqual(await repo.claims.claim(third, sha, file), { duplicateOf: second });

    // Replaying the old failure now would process the content twice: it becomes a duplicate instead.
    assert.equal(await repo.stages.reopenStage(first, 'upload'), 'duplicate');
    const row = await repo.reads.get(first);
    assert.equal(row?.status, 'duplicate');
    assert.equal(row?.duplicateOf, second);
    assert.equal(row?.error, null);
  });
});
