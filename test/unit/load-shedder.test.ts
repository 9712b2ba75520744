import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LoadShedder } from '../../src/api/load-shedder.js';
import { createLogger } from '../../src/shared/logger.js';

const log = createLogger({ LOG_LEVEL: 'silent' }, {}, 'stderr');
const config = { SHED_REDIS_MAX_BYTES: 1_000, SHED_INGEST_QUEUE_MAX: 0, SHED_CHECK_INTERVAL_MS: 50 };

/** The shedder with gauges the test controls (its own small interfaces, not Redis or RabbitMQ). */
function shedder(read: () => Promise<number>): LoadShedder {
  return new LoadShedder(config, { info: async () => `used_memory:${await read()}\r\n` } as never, { stageDepth: async () => 0 }, log);
}

describe('load shedding when its gauges cannot be read', () => {
  it('keeps shedding while a reading fails, instead of letting uploads in', async () => {
    let used = 2_000;
    let fail = false;
    const s = shedder(async () => {
      if (fail) throw new Error('redis away');
      return used;
    });
    await s.check();
    assert.match(s.sheddingReason ?? '', /redis memory 2000 bytes above 1000/);
    fail = true;
    await s.check();
    assert.match(s.sheddingReason ?? '', /redis memory/, 'still shedding');
    fail = false;
    used = 10;
    await s.check();
    assert.equal(s.sheddingReason, null);
  });

  it('sheds by itself once the gauges have been unreadable for long', async () => {
    const s = shedder(async () => {
      throw new Error('redis away');
    });
    await s.check();
    assert.equal(s.sheddingReason, null, 'one failed reading of a healthy system does not shed');
    (s as unknown as { lastReadAt: number }).lastReadAt = Date.now() - s.blindAfterMs - 1;
    await s.check();
    assert.match(s.sheddingReason ?? '', /load gauges unreadable/);
  });
});
