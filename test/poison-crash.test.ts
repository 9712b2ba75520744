import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { STAGES } from '../src/shared/config.js';
import { ApiKeyRepo } from '../src/db/api-key-repo.js';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { logLines } from './helpers/logs.js';
import { Stack, waitFor } from './helpers/stack.js';

/**
 * A file that kills the worker processing it (the OOM killer, a native crash): the supervisor
 * restarts the worker, the broker redelivers the message, and after CRASH_REDELIVERY_LIMIT
 * deliveries without an outcome it is dead-lettered as poison, with the photo failed, instead of
 * taking the role down forever. Quorum queues count deliveries for us (x-delivery-count); classic
 * queues only flag a redelivery, so the count is kept in Redis.
 */
for (const queueType of ['quorum', 'classic'] as const) {
  describe(`poison messages that crash their worker (${queueType} queues)`, () => {
    let stack: Stack;

    before(async () => {
      stack = await Stack.start({ workers: 'none', env: { QUEUE_TYPE: queueType, CRASH_REDELIVERY_LIMIT: '2' } });
      await stack.startWorkers(STAGES.filter((s) => s !== 'thumbnail'));
    });

    after(async () => {
      await stack?.stop();
    });

    it('dead-letters the message after the crash limit, fails only that photo, and the role keeps running', async () => {
      const poisonTenant = `poison_${randomUUID().slice(0, 8)}`;
      const poisonKey = (await new ApiKeyRepo(stack.db).create(poisonTenant)).key;
      const sup = stack.spawnCli('workers-thumbnail', ['workers', '--queues', 'thumbnail'], {
        PHOTOPIPE_TEST_FAULTS: JSON.stringify({ thumbnail: { crash: true, tenant: poisonTenant } }),
        SUPERVISOR_INITIAL_BACKOFF_MS: '100',
        SUPERVISOR_CRASH_LIMIT: '10',
      });
      await stack.waitForConsumers(['thumbnail'], 1, 60_000);

      const res = await stack.upload(distinctJpeg(photo('jpg/gps/DSCN0042.jpg'), `poison-${randomUUID()}`), { key: poisonKey });
      assert.equal(res.status, 202);
      const poisoned = ((await res.json()) as { id: string }).id;
      assert.equal(await stack.waitFinal(poisoned, 120_000), 'failed');
      const { rows } = await stack.db.query(`SELECT error, stages FROM photos WHERE id = $1`, [poisoned]);
      assert.equal(rows[0].error.stage, 'thumbnail');
      assert.equal(rows[0].error.code, 'worker_crashed');
      assert.match(rows[0].error.reason, /worker stopped 2 times while processing this message in thumbnail/);
      const letters = await waitFor('the dead letter', async () => ((await stack.queueStats(stack.dlq('thumbnail'))).messageCount === 1 ? true : null), 20_000, 200);
      assert.ok(letters);

      // Two crashes, two restarts; the role is up and consuming, and other photos go through it.
      const exits = logLines<{ msg?: string; childRole?: string; signal?: string | null }>(stack, 'workers-thumbnail').filter(
        (l) => l.msg === 'process exited unexpectedly; restarting' && l.childRole === 'worker:thumbnail',
      );
      assert.deepEqual(exits.map((l) => l.signal), ['SIGKILL', 'SIGKILL']);
      await stack.waitForConsumers(['thumbnail'], 1, 60_000);
      const healthy = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0042.jpg'), `healthy-${randomUUID()}`));
      assert.equal(await stack.waitFinal(healthy, 60_000), 'complete');
      assert.equal((await stack.queueStats(stack.queue('thumbnail'))).messageCount, 0);

      sup.kill('SIGTERM');
      assert.deepEqual(await sup.exited, { code: 0, signal: null });
    });
  });
}
