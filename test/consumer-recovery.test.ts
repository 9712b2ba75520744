import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { Stack, waitFor } from './helpers/stack.js';

/** A queue deleted by an operator: its consumer comes back by itself, and publishers notice the missing route. */
describe('consumer recovery', () => {
  let stack: Stack;

  before(async () => {
    stack = await Stack.start({ workers: 'one' });
  });

  after(async () => {
    await stack?.stop();
  });

  it('re-declares a deleted queue and consumes again, without a restart', async () => {
    await stack.amqp((ch) => ch.deleteQueue(stack.queue('thumbnail')));
    await waitFor('thumbnail consumer back', async () => (await stack.queueStats(stack.queue('thumbnail'))).consumerCount === 1, 20_000, 250);
    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0012.jpg'), `recovery-${Date.now()}`));
    assert.equal(await stack.waitFinal(id, 60_000), 'complete');
  });

  it('answers 503 for an upload whose queue is gone (never a 202 for a message no queue took), and declares it again', async () => {
    const workers = stack.procs.find((p) => p.name.startsWith('worker-') && p.running);
    assert.ok(workers);
    assert.equal((await workers.stop()).code, 0);
    await waitFor('no ingest consumer', async () => (await stack.queueStats(stack.queue('ingest'))).consumerCount === 0, 20_000, 250);
    await stack.amqp((ch) => ch.deleteQueue(stack.queue('ingest')));
    const { rows: before } = await stack.db.query(`SELECT count(*)::int AS n FROM photos`);

    const refused = await stack.upload(distinctJpeg(photo('jpg/gps/DSCN0040.jpg'), `unroutable-${Date.now()}`));
    assert.equal(refused.status, 503);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'service_unavailable');
    assert.match(refused.headers.get('retry-after') ?? '', /^\d+$/);
    const { rows: after } = await stack.db.query(`SELECT count(*)::int AS n FROM photos`);
    assert.equal(after[0].n, before[0].n, 'the refused upload left no row behind');

    // The API declared the topology again: the next upload is stored and queued.
    const id = await stack.uploadOk(distinctJpeg(photo('jpg/gps/DSCN0040.jpg'), `routable-${Date.now()}`));
    assert.equal((await stack.queueStats(stack.queue('ingest'))).messageCount, 1);
    await stack.startWorkers(['ingest', 'exif', 'geocode', 'frame', 'thumbnail', 'upload']);
    assert.equal(await stack.waitFinal(id, 60_000), 'complete');
  });
});
