import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { newTenant } from './helpers/fault-check.js';
import { Stack, waitFor, type Proc } from './helpers/stack.js';
import amqplib from 'amqplib';
import { STAGES } from '../src/shared/config.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'photopipe.js');
const JPEG = photo('jpg/gps/DSCN0010.jpg');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function cli(stack: Stack, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...stack.env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

/** Publishes a raw message as anyone with access to the broker could, and waits for the broker's confirm. */
async function publish(stack: Stack, routingKey: string, body: unknown, messageId = randomUUID()): Promise<void> {
  const conn = await amqplib.connect(stack.config.AMQP_URL);
  try {
    const ch = await conn.createConfirmChannel();
    ch.publish(stack.config.AMQP_PREFIX, routingKey, Buffer.from(JSON.stringify(body)), { persistent: true, messageId });
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}

/**
 * Nothing accepted is lost while its photo is not final: accepted bytes carry no expiry, a failed
 * photo's bytes leave Redis for S3 (so they stop counting against load shedding) and come back
 * when it is replayed, for FAILED_RETENTION_SECONDS; and a message never makes a worker write on
 * another tenant's photo or read another photo's bytes.
 */
describe('durability of accepted photos', () => {
  let stack: Stack;

  before(async () => {
    stack = await Stack.start({ workers: 'none', env: { FAILED_RETENTION_SECONDS: '6' } });
    await waitFor('the API to be ready', async () => (await fetch(`${stack.apiUrl}/readyz`)).ok, 30_000, 200);
  });

  after(async () => {
    await stack?.stop();
  });

  const blobKeys = (id: string) => stack.redis.keys(`${stack.config.REDIS_KEY_PREFIX}blob:${id}:*`);
  const parkedExists = async (id: string, kind: string) =>
    stack.s3
      .send(new HeadObjectCommand({ Bucket: stack.config.S3_BUCKET, Key: `_parked/${id}/${kind}` }))
      .then(() => true)
      .catch(() => false);
  const row = async (id: string) =>
    (await stack.db.query(`SELECT status, blobs_parked_at, blobs_dropped_at, sha256 FROM photos WHERE id = $1`, [id])).rows[0] as {
      status: string;
      blobs_parked_at: Date | null;
      blobs_dropped_at: Date | null;
      sha256: string | null;
    };

  it('keeps accepted bytes without expiry while the workers are down, through reconciler sweeps, and completes them when the workers return', async () => {
    const bodies = [0, 1, 2].map((i) => distinctJpeg(JPEG, `down-${stack.name}-${i}`));
    const ids = [];
    for (const b of bodies) ids.push(await stack.uploadOk(b));
    for (const id of ids) assert.equal(await stack.redis.pttl(`${stack.config.REDIS_KEY_PREFIX}blob:${id}:raw`), -1, 'no expiry on accepted bytes');
    // The reconciler sweeps (orphans, parking) several times meanwhile and must leave them alone.
    const reconciler = stack.spawnCli('reconciler-down', ['reconciler'], { RECONCILE_INTERVAL_MS: '1000' });
    await new Promise((r) => setTimeout(r, 5_000));
    for (const id of ids) assert.deepEqual(await blobKeys(id), [`${stack.config.REDIS_KEY_PREFIX}blob:${id}:raw`], 'still there');
    await reconciler.stop();
    const workers = await stack.startWorkers([...STAGES]);
    const final = await stack.waitAllFinal(ids, 90_000);
    assert.deepEqual([...final.values()], ['complete', 'complete', 'complete']);
    for (const [i, id] of ids.entries()) {
      assert.equal((await row(id)).sha256, sha256(bodies[i]!));
      assert.deepEqual(await blobKeys(id), [], 'nothing left in Redis once complete');
    }
    await workers.stop();
  });

  let failedId = '';
  let failedBody: Buffer = Buffer.alloc(0);

  it('parks a failed photo\'s bytes in S3 (out of Redis) and a replay later reads them back and completes', async () => {
    const faulty = await stack.startWorkers([...STAGES], { PHOTOPIPE_TEST_FAULTS: JSON.stringify({ upload: { always: true } }), STAGE_MAX_ATTEMPTS: 'upload=1' });
    failedBody = distinctJpeg(JPEG, `failed-${stack.name}`);
    failedId = await stack.uploadOk(failedBody);
    assert.equal(await stack.waitFinal(failedId, 60_000), 'failed');
    await waitFor('the failed photo\'s bytes to be parked', async () => (await row(failedId)).blobs_parked_at !== null, 20_000);
    assert.deepEqual(await blobKeys(failedId), [], 'no bytes of a failed photo left in Redis (they do not count against shedding)');
    for (const kind of ['raw', 'framed', 'thumbnail']) assert.ok(await parkedExists(failedId, kind), `parked ${kind}`);
    await faulty.stop();

    // Later (the bytes would have outlived any Redis TTL): fix the cause, replay.
    const workers = await stack.startWorkers([...STAGES]);
    const replay = await cli(stack, ['dlq', 'replay', '--stage', 'upload']);
    assert.equal(replay.code, 0, replay.stderr);
    assert.equal((JSON.parse(replay.stdout) as { replayed: unknown[] }).replayed.length, 1);
    assert.equal(await stack.waitFinal(failedId, 60_000), 'complete');
    const view = await stack.getPhoto(failedId);
    assert.equal(view.body.error, null);
    const original = await stack.s3Object(`${stack.tenant}/${failedId}/original.jpg`);
    assert.equal(sha256(original.body), sha256(failedBody), 'the original in S3 is the accepted upload, byte for byte');
    // The reconciler removes parked bytes nobody will read again.
    const reconciler = stack.spawnCli('reconciler-drop', ['reconciler'], { RECONCILE_INTERVAL_MS: '1000' });
    await waitFor('parked bytes of the completed photo to be removed', async () => (await row(failedId)).blobs_parked_at === null && !(await parkedExists(failedId, 'raw')), 20_000, 250);
    assert.deepEqual(await blobKeys(failedId), []);
    await reconciler.stop();
    await workers.stop();
  });

  it('removes a failed photo\'s parked bytes after FAILED_RETENTION_SECONDS; its replay is then refused with the reason and the letter stays', async () => {
    const faulty = await stack.startWorkers([...STAGES], { PHOTOPIPE_TEST_FAULTS: JSON.stringify({ upload: { always: true } }), STAGE_MAX_ATTEMPTS: 'upload=1' });
    const id = await stack.uploadOk(distinctJpeg(JPEG, `expire-${stack.name}`));
    assert.equal(await stack.waitFinal(id, 60_000), 'failed');
    await waitFor('parked', async () => (await row(id)).blobs_parked_at !== null, 20_000);
    await faulty.stop();
    const reconciler: Proc = stack.spawnCli('reconciler-expire', ['reconciler'], { RECONCILE_INTERVAL_MS: '1000' });
    await waitFor('the retention to pass and the parked bytes to go', async () => (await row(id)).blobs_dropped_at !== null, 30_000, 250);
    await reconciler.stop();
    assert.equal(await parkedExists(id, 'raw'), false);
    const replay = await cli(stack, ['dlq', 'replay', '--stage', 'upload']);
    assert.equal(replay.code, 0, replay.stderr);
    const out = JSON.parse(replay.stdout) as { replayed: unknown[]; skipped: { reason: string }[] };
    assert.equal(out.replayed.length, 0);
    assert.match(out.skipped[0]?.reason ?? '', /FAILED_RETENTION_SECONDS/);
    assert.equal((await stack.queueStats(stack.dlq('upload'))).messageCount, 1, 'the dead letter stays');
    assert.equal((await row(id)).status, 'failed');
  });

  it('writes nothing on another tenant\'s photo for a forged message, and never reads bytes by a key a message names', async () => {
    const workers = await stack.startWorkers([...STAGES]);
    const victim = await stack.uploadOk(distinctJpeg(JPEG, `victim-${stack.name}`));
    assert.equal(await stack.waitFinal(victim, 60_000), 'complete');
    const before = await row(victim);

    const attacker = await newTenant(stack, 'attacker');
    // 1. A message naming the victim's photo with the attacker's tenant.
    await publish(stack, 'exif', { v: 1, photoId: victim, tenantId: attacker.tenant });
    await waitFor('the forged message to be dead-lettered', async () => (await stack.queueStats(stack.dlq('exif'))).messageCount === 1, 20_000);
    const listed = await cli(stack, ['dlq', 'list', '--stage', 'exif']);
    const entry = (JSON.parse(listed.stdout) as { items: { photoId: string; tenantId: string; code: string; reason: string }[] }).items.find(
      (i) => i.photoId === victim && i.tenantId === attacker.tenant,
    );
    assert.equal(entry?.code, 'tenant_mismatch', JSON.stringify(entry));
    const afterForged = await row(victim);
    assert.deepEqual(afterForged, before, 'the victim photo is untouched (not failed)');

    // 2. The attacker's own photo, with a message pointing its (ignored) rawKey at the victim's bytes.
    const res = await fetch(`${stack.apiUrl}/v1/photos`, {
      method: 'POST',
      headers: { authorization: `Bearer ${attacker.key}`, 'content-type': 'image/jpeg' },
      body: distinctJpeg(JPEG, `attacker-${stack.name}`),
    });
    assert.equal(res.status, 202);
    const own = ((await res.json()) as { id: string }).id;
    await publish(stack, 'ingest', { v: 1, photoId: own, tenantId: attacker.tenant, rawKey: `${stack.config.REDIS_KEY_PREFIX}blob:${victim}:raw` });
    assert.equal(await stack.waitFinal(own, 60_000), 'complete');
    assert.equal((await row(own)).sha256, sha256(distinctJpeg(JPEG, `attacker-${stack.name}`)), 'its own bytes, not the victim\'s');
    await workers.stop();
  });
});
