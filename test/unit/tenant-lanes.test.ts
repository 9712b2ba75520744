import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { nextLane } from '../../src/queues/stage-consumer.js';
import { loadConfig } from '../../src/shared/config.js';

describe('lanes and tenant limits', () => {
  it('serves the interactive lane first, and gives the bulk lane its share while both wait', () => {
    assert.equal(nextLane({ interactive: 0, bulk: 0 }, 0, 0.2), null);
    assert.equal(nextLane({ interactive: 3, bulk: 0 }, 9, 0.2), 'interactive');
    assert.equal(nextLane({ interactive: 0, bulk: 3 }, 0, 0.2), 'bulk', 'an idle interactive lane never holds bulk work back');
    const starts: string[] = [];
    let since = 0;
    for (let i = 0; i < 10; i++) {
      const lane = nextLane({ interactive: 5, bulk: 5 }, since, 0.2);
      starts.push(lane ?? '-');
      since = lane === 'bulk' ? 0 : since + 1;
    }
    assert.deepEqual(starts.filter((l) => l === 'bulk').length, 2, `one start in five goes to bulk: ${starts.join(',')}`);
    assert.equal(nextLane({ interactive: 5, bulk: 5 }, 100, 0), 'interactive', 'share 0: bulk waits for an idle interactive lane');
  });

  it('reads per-tenant limits', () => {
    const c = loadConfig({ TENANT_LIMITS: 'acme=120/500, big-co=0/100000' });
    assert.deepEqual(c.TENANT_LIMITS, { acme: { uploadsPerMinute: 120, maxInFlight: 500 }, 'big-co': { uploadsPerMinute: 0, maxInFlight: 100_000 } });
    assert.throws(() => loadConfig({ TENANT_LIMITS: 'acme=120' }), /TENANT_LIMITS: bad entry "acme=120"/);
    assert.throws(() => loadConfig({ BULK_LANE_SHARE: '2' }), /BULK_LANE_SHARE/);
  });
});
