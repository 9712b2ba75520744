import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SharedResult } from '../../src/shared/shared-result.js';

describe('shared result (readiness caching)', () => {
  it('runs the check at most twice for 50 rapid callers within a second, concurrent or one after another', async () => {
    let runs = 0;
    const ready = new SharedResult(async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 20));
      return { ready: true, run: runs };
    }, 1_000);
    const concurrent = await Promise.all(Array.from({ length: 25 }, () => ready.get()));
    for (let i = 0; i < 25; i++) await ready.get();
    assert.ok(runs <= 2, `${runs} checks`);
    assert.equal(runs, 1);
    assert.ok(concurrent.every((r) => r === concurrent[0]), 'concurrent callers share one result');
  });

  it('checks again once the result is older than its TTL', async () => {
    let now = 0;
    let runs = 0;
    const r = new SharedResult(async () => ++runs, 1_000, () => now);
    assert.equal(await r.get(), 1);
    now = 999;
    assert.equal(await r.get(), 1);
    now = 1_000;
    assert.equal(await r.get(), 2);
  });

  it('does not keep a failed check', async () => {
    let runs = 0;
    const r = new SharedResult(async () => {
      runs++;
      if (runs === 1) throw new Error('boom');
      return 'ok';
    }, 1_000);
    await assert.rejects(r.get(), /boom/);
    assert.equal(await r.get(), 'ok');
  });
});
