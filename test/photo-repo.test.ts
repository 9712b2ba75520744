import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { PhotoRepo } from '../src/db/photo-repo.js';
import { migrate } from '../src/db/migrate.js';
import { createLogger } from '../src/shared/logger.js';

/** Photo state under concurrency, on a real Postgres database of its own. */
describe('PhotoRepo (Postgres)', () => {
  const dbName = `pp_repo_${Date.now().toString(36)}`;
  const url = `postgres://postgres@127.0.0.1:5432/${dbName}`;
  let pool: pg.Pool;
  let repo: PhotoRepo;

  before(async () => {
    await migrate(url, createLogger({ LOG_LEVEL: 'warn' }, {}, 'stderr'));
    pool = new pg.Pool({ connectionString: url, max: 20 });
    repo = new PhotoRepo(pool);
  });

  after(async () => {
    await pool.end();
    const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(dbName)} WITH (FORCE)`);
    await admin.end();
  });

  async function ingested(tenant: string): Promise<string> {
    const id = randomUUID();
    await repo.insertQueued({ id, tenantId: tenant, originalName: null, contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
    await repo.claimContent(id, randomUUID().replace(/-/g, '').padEnd(64, '0'), { format: 'jpeg', width: 1, height: 1, bytes: 1 });
    await repo.completeStage(id, 'ingest', { initStages: { exif: 'pending', frame: 'pending', thumbnail: 'pending', upload: 'pending' } });
    return id;
  }

  it('never loses a stage when stages finish at the same moment, and completes exactly once', async () => {
    const ids = await Promise.all(Array.from({ length: 30 }, () => ingested('t1')));
    for (const id of ids) {
      await repo.completeStage(id, 'upload');
      const results = await Promise.all([
        repo.completeStage(id, 'frame'),
        repo.completeStage(id, 'thumbnail'),
        repo.completeStage(id, 'exif', { setStages: { geocode: 'skipped' }, fields: { exif: { make: 'x' }, exifRaw: null, gps: null } }),
      ]);
      const row = await repo.get(id);
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
        await repo.insertQueued({ id, tenantId: 't2', originalName: null, contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
        return id;
      }),
    );
    const outcomes = await Promise.all(ids.map((id) => repo.claimContent(id, sha, { format: 'jpeg', width: 1, height: 1, bytes: 1 })));
    const winners = ids.filter((_, i) => outcomes[i]?.duplicateOf === null);
    assert.equal(winners.length, 1);
    assert.ok(outcomes.every((o) => o.duplicateOf === null || o.duplicateOf === winners[0]));
    // Re-running the winner's claim (a redelivered message) changes nothing.
    assert.deepEqual(await repo.claimContent(winners[0]!, sha, { format: 'jpeg', width: 1, height: 1, bytes: 1 }), { duplicateOf: null });
    // The same bytes from another tenant are not a duplicate.
    const other = randomUUID();
    await repo.insertQueued({ id: other, tenantId: 't3', originalName: null, contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
    assert.deepEqual(await repo.claimContent(other, sha, { format: 'jpeg', width: 1, height: 1, bytes: 1 }), { duplicateOf: null });
  });

  it('keeps a completed photo complete when a late failure is recorded', async () => {
    const id = await ingested('t4');
    for (const s of ['exif', 'frame', 'thumbnail', 'upload'] as const) await repo.completeStage(id, s, s === 'exif' ? { setStages: { geocode: 'skipped' } } : {});
    await repo.recordFailure(id, { stage: 'frame', reason: 'late', code: 'x', errorClass: 'retryable', attempts: 1 });
    assert.equal((await repo.get(id))?.status, 'complete');
  });
});
