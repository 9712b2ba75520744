import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deferralDelay, retryDelay } from '../../src/queues/retry-schedule.js';
import { buildTopology } from '../../src/queues/topology.js';

const levels = buildTopology({ AMQP_PREFIX: 'pp', QUEUE_TYPE: 'quorum', QUEUE_DELIVERY_LIMIT: 10, RETRY_DELAYS_MS: [1_000, 5_000, 30_000, 120_000, 600_000] }).retryLevels;
const delays = [1_000, 5_000, 30_000, 120_000, 600_000];

describe('retry and deferral delays', () => {
  it('takes the delay for the attempt that failed, the last one repeating', () => {
    const mid = () => 0.5; // no jitter at the middle of the range
    assert.deepEqual(retryDelay(1, delays, levels, 0.2, mid), { level: levels[0], ttlMs: 1_000 });
    assert.equal(retryDelay(3, delays, levels, 0.2, mid).level.label, '30s');
    assert.equal(retryDelay(5, delays, levels, 0.2, mid).level.label, '10m');
    assert.equal(retryDelay(9, delays, levels, 0.2, mid).level.label, '10m');
  });

  it('spreads the TTL by the jitter, within bounds', () => {
    assert.equal(retryDelay(2, delays, levels, 0.2, () => 0).ttlMs, 4_000);
    assert.equal(retryDelay(2, delays, levels, 0.2, () => 0.999999).ttlMs, 6_000);
    assert.equal(retryDelay(2, delays, levels, 0, () => 0).ttlMs, 5_000);
  });

  it('defers through the longest level not longer than the wish, with the level as TTL', () => {
    assert.deepEqual(deferralDelay(60_000, levels), { level: levels[2], ttlMs: 30_000 }, 'a minute: 30 s, then the handler defers again if needed');
    assert.deepEqual(deferralDelay(10, levels), { level: levels[0], ttlMs: 1_000 }, 'shorter than every level: the shortest');
    assert.deepEqual(deferralDelay(3_600_000, levels), { level: levels[4], ttlMs: 600_000 });
    assert.deepEqual(deferralDelay(5_000, levels), { level: levels[1], ttlMs: 5_000 });
  });
});
