import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { STAGES } from '../src/shared/config.js';
import { isDataRejection, permanentIfDataRejection } from '../src/shared/db.js';
import { classify } from '../src/shared/errors.js';
import { extractExif } from '../src/imaging/exif.js';
import { exifColumns } from '../src/workers/exif/exif-columns.js';
import { createLogger } from '../src/shared/logger.js';
import { ProcessResources } from '../src/shared/process-resources.js';
import { StageConsumer } from '../src/queues/stage-consumer.js';
import { StageEvents, type StageEvent } from '../src/queues/stage-events.js';
import { photoRepos } from '../src/db/photos/index.js';
import { FrameRepo } from '../src/db/frame-repo.js';
import { PIPELINE } from '../src/pipeline/photo-pipeline.js';
import { stageRunner } from '../src/workers/stage-runner.js';
import type { StageDeps } from '../src/workers/stage-module.js';
import { craftedJpeg } from './helpers/exif-builder.js';
import { assertDbSafeDeep, HOSTILE_EXIF_CASES, type StoredExif } from './helpers/hostile-exif-cases.js';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { logLines, type LogLine } from './helpers/logs.js';
import { Stack, waitFor } from './helpers/stack.js';

/**
 * Hostile or unlucky EXIF never fails a photo: each crafted file (lone surrogates, an emoji cut in
 * half, NUL bytes, invalid UTF-8, lying counts, thousands of tags, IFD loops) is uploaded through
 * the API and completes with its EXIF stored, without a single retry. And a value Postgres still
 * rejects is a permanent failure (`invalid_data`), dead-lettered on its first attempt. The errors
 * classified here are the real Postgres's, provoked on purpose.
 */

const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

describe('Postgres and hostile text', () => {
  let client: pg.Client;

  before(async () => {
    client = new pg.Client({ connectionString: ADMIN_URL });
    await client.connect();
    // Session-local: gone when the connection closes.
    await client.query(`CREATE TEMP TABLE hostile_ref (id uuid PRIMARY KEY)`);
    await client.query(`CREATE TEMP TABLE hostile_unique (k text PRIMARY KEY)`);
    await client.query(
      `CREATE TEMP TABLE hostile (v jsonb, t text, short varchar(3), n int CHECK (n >= 0), nn int NOT NULL DEFAULT 0, ref uuid REFERENCES hostile_ref (id))`,
    );
  });

  after(async () => {
    await client?.end();
  });

  it('rejects lone surrogates and NUL with data exceptions, which are permanent (invalid_data)', async () => {
    const rejections: [string, string, unknown[]][] = [
      ['22P02', `INSERT INTO hostile (v) VALUES ($1::jsonb)`, [JSON.stringify({ UserComment: 'Holiday\ud800' })]],
      ['22P02', `INSERT INTO hostile (v) VALUES ($1::jsonb)`, [JSON.stringify({ ['key\udc00']: 1 })]],
      ['22P02', `INSERT INTO hostile (v) VALUES ($1::jsonb)`, [JSON.stringify({ cut: `${'c'.repeat(199)}\u{1F600}`.slice(0, 200) })]],
      ['22P05', `INSERT INTO hostile (v) VALUES ($1::jsonb)`, [JSON.stringify({ a: 'x\u0000y' })]],
      ['22021', `INSERT INTO hostile (t) VALUES ($1::text)`, ['x\u0000y']],
      ['22001', `INSERT INTO hostile (short) VALUES ($1)`, ['abcd']],
      ['22003', `INSERT INTO hostile (n) VALUES ($1)`, ['99999999999']],
      ['23514', `INSERT INTO hostile (n) VALUES ($1)`, [-1]],
      ['23502', `INSERT INTO hostile (nn) VALUES ($1)`, [null]],
      ['23503', `INSERT INTO hostile (ref) VALUES ($1)`, [randomUUID()]],
    ];
    for (const [sqlstate, sql, params] of rejections) {
      const err = await client.query(sql, params).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof pg.DatabaseError, `${sql} ${JSON.stringify(params)} was accepted`);
      assert.equal(err.code, sqlstate, err.message);
      assert.equal(isDataRejection(err), true, sqlstate);
      const classified = permanentIfDataRejection(err);
      assert.equal(classify(classified), 'permanent', sqlstate);
      assert.equal((classified as { code?: string }).code, 'invalid_data');
      assert.ok(classified.message.includes(sqlstate));
    }
    // Not about a value: a unique violation (callers handle it), a statement timeout, a syntax error stay as they were.
    const failure = (sql: string) =>
      client.query(sql).then(
        () => null,
        (e: unknown) => e,
      );
    await client.query(`INSERT INTO hostile_unique VALUES ('a')`);
    const unique = await failure(`INSERT INTO hostile_unique VALUES ('a')`);
    await client.query(`SET statement_timeout = 50`);
    const timeout = await failure(`SELECT pg_sleep(1)`);
    await client.query(`RESET statement_timeout`);
    const syntax = await failure(`SELEC 1`);
    for (const [sqlstate, err] of [
      ['23505', unique],
      ['57014', timeout],
      ['42601', syntax],
    ] as const) {
      assert.ok(err instanceof pg.DatabaseError, sqlstate);
      assert.equal(err.code, sqlstate);
      assert.equal(isDataRejection(err), false, sqlstate);
      assert.equal(permanentIfDataRejection(err), err);
    }
  });

  it('stores what extractExif makes of every crafted file, and reads it back unchanged', async () => {
    for (const c of HOSTILE_EXIF_CASES) {
      const { exif, raw } = await extractExif(await craftedJpeg(c.spec));
      // As the brief of this test says: the plain JSON text, not only the column helper's.
      const { rows } = await client.query<{ raw: unknown; exif: unknown }>(`INSERT INTO hostile (v, t) VALUES ($1::jsonb, $2::text) RETURNING v AS raw, t::jsonb AS exif`, [
        JSON.stringify(raw),
        JSON.stringify(exif),
      ]);
      assert.deepEqual(rows[0]?.raw, raw, c.name);
      assert.deepEqual(rows[0]?.exif, exif, c.name);
      const cols = exifColumns(exif, raw);
      await client.query(`INSERT INTO hostile (v) VALUES ($1::jsonb), ($2::jsonb)`, [cols.exif?.value, cols.exif_raw?.value]);
    }
  });
});

interface PhotoDbRow {
  status: string;
  exif: StoredExif['exif'];
  exif_raw: StoredExif['raw'];
  error: { stage: string; reason: string; code: string; errorClass: string; attempts: number } | null;
  stages: Record<string, string>;
}

async function row(stack: Stack, id: string): Promise<PhotoDbRow> {
  const { rows } = await stack.db.query<PhotoDbRow>(`SELECT status, exif, exif_raw, error, stages FROM photos WHERE id = $1`, [id]);
  assert.ok(rows[0], `photo ${id} exists`);
  return rows[0];
}

describe('hostile EXIF through the whole pipeline', () => {
  let stack: Stack;

  before(async () => {
    stack = await Stack.start({ workers: 'one' });
  });

  after(async () => {
    await stack?.stop();
  });

  it('completes every crafted JPEG with its EXIF stored, well-formed, and never retries it', async () => {
    const files = await Promise.all(HOSTILE_EXIF_CASES.map((c) => craftedJpeg(c.spec)));
    const ids = await Promise.all(files.map((f) => stack.uploadOk(f)));
    await stack.waitAllFinal(ids, 120_000);

    const problems: string[] = [];
    for (const [i, c] of HOSTILE_EXIF_CASES.entries()) {
      const r = await row(stack, ids[i]!);
      try {
        assert.equal(r.status, 'complete', `status ${r.status}, error ${JSON.stringify(r.error)}`);
        assert.equal(r.stages.exif, 'done');
        assert.ok(r.exif, 'normalised EXIF stored');
        assertDbSafeDeep(r.exif_raw);
        assertDbSafeDeep(r.exif);
        c.stored({ exif: r.exif, raw: r.exif_raw });
      } catch (err) {
        problems.push(`${c.name}: ${(err as Error).message}`);
      }
    }
    const worker = stack.procs.find((p) => p.name.startsWith('worker-'));
    assert.ok(worker);
    const retried = logLines<LogLine>(stack, worker.name).filter((l) => l.msg === 'stage failed; scheduling retry' && ids.includes(String(l.photoId)));
    for (const l of retried) problems.push(`retried: ${HOSTILE_EXIF_CASES[ids.indexOf(String(l.photoId))]?.name} in ${String(l.stage)}: ${String(l.err)}`);
    assert.deepEqual(problems, []);
  });
});

describe('a value Postgres rejects', () => {
  let stack: Stack;
  let res: ProcessResources;
  let consumer: StageConsumer;
  const events: StageEvent[] = [];

  before(async () => {
    // Every role but exif in the stack's worker process; exif runs here, in a stage whose result
    // carries a jsonb value built by hand (as the exif stage did before its strings were made
    // well-formed): the real runner commits it, Postgres refuses it, the real consumer decides.
    stack = await Stack.start({ workers: 'none' });
    await stack.startWorkers(STAGES.filter((s) => s !== 'exif'));
    const log = createLogger({ LOG_LEVEL: 'warn' }, { role: 'test-exif' }, 'stderr');
    res = new ProcessResources(stack.config, log, 'test-exif');
    const deps: StageDeps = {
      config: stack.config,
      log,
      db: res.db,
      redis: res.redis,
      blobs: res.blobs,
      storage: res.storage,
      broker: res.broker,
      photos: photoRepos(res.db),
      frames: new FrameRepo(res.db),
    };
    const bus = new StageEvents();
    bus.on((e) => events.push(e));
    consumer = new StageConsumer({
      config: stack.config,
      broker: res.broker,
      redis: res.redis,
      log,
      stage: 'exif',
      events: bus,
      recorder: {
        recordFailure: (msg, f) => deps.photos.stages.recordFailure(msg, f),
        recordRetry: (msg) => deps.photos.stages.touchProgress(msg.photoId),
      },
      handler: stageRunner(deps, PIPELINE, 'exif', {
        run: () => Promise.resolve({ columns: { exif_raw: { value: '{"UserComment":"Holiday\\ud800"}', type: 'jsonb' } }, facts: { gps: null } }),
      }),
    });
    consumer.start();
  });

  after(async () => {
    await consumer?.stop(1_000);
    await res?.release();
    await stack?.stop();
  });

  it('is a permanent failure (invalid_data): dead-lettered on its first attempt, never retried', async () => {
    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), `reject-${Date.now()}`));
    const dead = await waitFor('the exif dead letter', async () => events.find((e) => e.photoId === id && e.type === 'dead_lettered'), 60_000, 50);
    const seen = events.filter((e) => e.photoId === id).map((e) => [e.type, e.attempt]);
    assert.deepEqual(seen, [
      ['started', 1],
      ['dead_lettered', 1],
    ]);
    assert.equal(dead.type === 'dead_lettered' && dead.code, 'invalid_data');
    assert.equal(dead.type === 'dead_lettered' && dead.errorClass, 'permanent');

    assert.equal(await stack.waitFinal(id), 'failed');
    const r = await row(stack, id);
    assert.equal(r.error?.stage, 'exif');
    assert.equal(r.error?.code, 'invalid_data');
    assert.equal(r.error?.errorClass, 'permanent');
    assert.equal(r.error?.attempts, 1);
    assert.match(r.error?.reason ?? '', /22P02/);
    assert.match(r.error?.reason ?? '', /surrogate/);

    const letter = await stack.amqp(async (ch) => {
      const msg = await ch.get(stack.dlq('exif'), { noAck: false });
      return msg ? (msg.properties.headers as Record<string, unknown>) : null;
    });
    assert.ok(letter, 'a dead letter in the exif DLQ');
    assert.equal(letter['x-error-code'], 'invalid_data');
    assert.equal(letter['x-error-class'], 'permanent');
    assert.equal(letter['x-attempts'], 1);
  });

  it('records a client file name and a failure reason quoting file text, NUL and lone surrogates included', async () => {
    const photos = photoRepos(res.db);
    const id = randomUUID();
    await photos.intake.insertQueued({ id, tenantId: stack.tenant, originalName: 'holiday\0\ud800.jpg', contentType: 'image/jpeg', bytes: 1, format: 'jpeg' });
    const recorded = await photos.stages.recordFailure({ photoId: id, tenantId: stack.tenant }, { stage: 'frame', reason: 'corrupt: "Trip\0\udc00"', code: 'corrupt_image', errorClass: 'permanent', attempts: 1 });
    assert.equal(recorded, 'recorded');
    const { rows } = await stack.db.query<{ original_name: string; error: { reason: string } }>(`SELECT original_name, error FROM photos WHERE id = $1`, [id]);
    assert.equal(rows[0]?.original_name, 'holiday\ufffd.jpg');
    assert.equal(rows[0]?.error.reason, 'corrupt: "Trip\ufffd"');
  });
});
