import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { newTenant } from './helpers/fault-check.js';
import { Stack, waitFor } from './helpers/stack.js';
import { STAGES } from '../src/shared/config.js';
import { createLogger } from '../src/shared/logger.js';
import { ProcessResources } from '../src/shared/process-resources.js';
import { photoRepos } from '../src/db/photos/index.js';
import { acceptPhoto } from '../src/pipeline/accept-photo.js';
import { TenantLoad } from '../src/pipeline/tenant-load.js';

async function upload(stack: Stack, key: string, bytes: Buffer): Promise<Response> {
  return fetch(`${stack.apiUrl}/v1/photos`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'image/jpeg' }, body: bytes });
}

/**
 * Per-tenant limits and fairness: a tenant's uploads per minute and photos in flight are bounded
 * (429 with Retry-After, per tenant, shared by every API process), and one tenant's backlog never
 * holds another tenant's photo behind it: past BULK_LANE_THRESHOLD its photos take the bulk lane,
 * and workers serve the interactive lane first.
 */
describe('per-tenant limits and fairness', () => {
  let stack: Stack;
  let limited: { tenant: string; key: string };
  let capped: { tenant: string; key: string };

  before(async () => {
    stack = await Stack.start({ api: false, workers: 'none' });
    limited = await newTenant(stack, 'limited');
    capped = await newTenant(stack, 'capped');
    await stack.startApi({ TENANT_LIMITS: `${limited.tenant}=5/0,${capped.tenant}=0/3` });
    await waitFor('the API to be ready', async () => (await fetch(`${stack.apiUrl}/readyz`)).ok, 30_000, 200);
  });

  after(async () => {
    await stack?.stop();
  });

  it('answers 429 with Retry-After past a tenant\'s uploads per minute, and only for that tenant', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await upload(stack, limited.key, distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), `rate-${i}`))).status, 202);
    const refused = await upload(stack, limited.key, distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), 'rate-6'));
    assert.equal(refused.status, 429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'rate_limited');
    assert.equal((await upload(stack, stack.apiKey, distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), 'other-tenant'))).status, 202, 'another tenant is not affected');
  });

  it('answers 429 past a tenant\'s photos in flight', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await upload(stack, capped.key, distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), `cap-${i}`))).status, 202);
    // The count is cached for a second per API process.
    await new Promise((r) => setTimeout(r, 1_100));
    const refused = await upload(stack, capped.key, distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), 'cap-4'));
    assert.equal(refused.status, 429);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'too_many_in_flight');
    assert.ok(Number(refused.headers.get('retry-after')) > 0);
  });

  it('completes another tenant\'s photo within seconds while one tenant has 10,000 photos waiting', async () => {
    const log = createLogger({ LOG_LEVEL: 'warn' }, { role: 'test' }, 'stderr');
    const res = new ProcessResources(stack.config, log, 'fairness-test');
    const flood = await newTenant(stack, 'flood');
    try {
      const photos = photoRepos(res.db);
      const load = new TenantLoad(stack.config, res.redis, photos.intake);
      const deps = { config: stack.config, blobs: res.blobs, intake: photos.intake, broker: res.broker, log, lanes: load };
      await res.broker.waitReady();

      // Idle: the other tenant's photo alone.
      const workers = await stack.startWorkers([...STAGES]);
      const single = photo('jpg/gps/DSCN0010.jpg');
      let t0 = Date.now();
      const idleId = await stack.uploadOk(distinctJpeg(single, 'idle'));
      assert.equal(await stack.waitFinal(idleId, 60_000), 'complete');
      const idleMs = Date.now() - t0;

      // The flood: 10,000 small photos of one tenant, accepted the way every entry point accepts them.
      const tiny = await sharp({ create: { width: 48, height: 32, channels: 3, background: '#4a7' } }).jpeg().toBuffer();
      const floodStart = Date.now();
      let next = 0;
      const lanes = { interactive: 0, bulk: 0 };
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          for (let i = next++; i < 10_000; i = next++) {
            const a = await acceptPhoto(deps, { tenantId: flood.tenant, bytes: distinctJpeg(tiny, `flood-${i}`), filename: null });
            lanes[a.lane]++;
          }
        }),
      );
      const acceptSeconds = (Date.now() - floodStart) / 1000;
      // Past BULK_LANE_THRESHOLD (50) in flight, plus what 32 concurrent accepts had decided at once.
      assert.ok(lanes.interactive <= 50 + 32, `the flood went to the bulk lane past the threshold: ${JSON.stringify(lanes)}`);

      // While the flood is being worked through, the other tenant uploads one photo.
      t0 = Date.now();
      const id = await stack.uploadOk(distinctJpeg(single, 'during-flood'));
      assert.equal(await stack.waitFinal(id, 120_000), 'complete');
      const loadedMs = Date.now() - t0;
      const { rows } = await stack.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM photos WHERE tenant_id = $1 AND status IN ('queued', 'processing')`, [flood.tenant]);
      const waiting = rows[0]?.n ?? 0;
      console.log(
        `# fairness: 10,000 flood photos accepted in ${acceptSeconds.toFixed(1)} s (${JSON.stringify(lanes)}); another tenant's photo: ${idleMs} ms idle, ${loadedMs} ms with the flood waiting (${waiting} of its photos still in flight)`,
      );
      assert.ok(waiting > 5_000, `the flood was still there: ${waiting}`);
      assert.ok(loadedMs < Math.max(3 * idleMs, idleMs + 10_000), `another tenant's photo waited ${loadedMs} ms (idle: ${idleMs} ms)`);
      await workers.stop();
    } finally {
      await res.release();
    }
  });
});
