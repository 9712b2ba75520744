import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { Stack, waitFor } from './helpers/stack.js';

/** A consumer the broker cancels (its queue deleted by an operator) comes back by itself. */
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
});
