import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTopology, delayLabel, RETRY_LEVEL_HEADER, toDefinitions } from '../../src/queues/topology.js';
import { STAGES } from '../../src/pipeline/photo-pipeline.js';

describe('RabbitMQ topology', () => {
  const t = buildTopology({ AMQP_PREFIX: 'pp', QUEUE_TYPE: 'quorum', QUEUE_DELIVERY_LIMIT: 10, RETRY_DELAYS_MS: [200, 1_000, 1_000, 60_000, 7_200_000] });

  it('has a work queue and a dead-letter queue per stage of the graph', () => {
    for (const s of STAGES) {
      const q = t.queues.find((x) => x.name === `pp.${s}`);
      assert.ok(q, s);
      assert.deepEqual(q.arguments, { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': 'pp.dlx', 'x-delivery-limit': 10 });
      assert.ok(t.bindings.some((b) => b.exchange === 'pp' && b.queue === `pp.${s}` && b.routingKey === s));
      assert.ok(t.bindings.some((b) => b.exchange === 'pp.dlx' && b.queue === `pp.dlq.${s}` && b.routingKey === s));
    }
  });

  it('gives each service queue a dead-letter queue of its own, except the wake-ups', () => {
    for (const name of ['webhook', 'batch.download', 'batch.dispatch']) {
      const q = t.queues.find((x) => x.name === `pp.${name}`);
      assert.equal(q?.arguments['x-dead-letter-exchange'], 'pp.dlx', name);
      assert.equal(q?.arguments['x-dead-letter-routing-key'], `service.${name}`, name);
      assert.ok(t.queues.some((x) => x.name === `pp.dlq.${name}`), name);
      assert.ok(t.bindings.some((b) => b.exchange === 'pp.dlx' && b.queue === `pp.dlq.${name}` && b.routingKey === `service.${name}`), name);
    }
    // Expired or dropped wake-ups are worthless: dead-lettering them would only fill a queue.
    const wakeUps = t.queues.find((x) => x.name === 'pp.batch.photos');
    assert.equal(wakeUps?.arguments['x-dead-letter-exchange'], undefined);
    assert.ok(!t.queues.some((x) => x.name === 'pp.dlq.batch.photos'));
  });

  it('has one delay queue per distinct delay, dead-lettering back to the work exchange', () => {
    assert.deepEqual(t.retryLevels.map((l) => l.label), ['200ms', '1s', '1m', '2h']);
    for (const l of t.retryLevels) {
      const q = t.queues.find((x) => x.name === l.queue);
      assert.equal(q?.arguments['x-dead-letter-exchange'], 'pp');
      assert.equal(q?.arguments['x-dead-letter-strategy'], 'at-least-once');
      const b = t.bindings.find((x) => x.queue === l.queue);
      // A headers binding whose match key starts with "x-" would match every message.
      assert.deepEqual(b?.arguments, { 'x-match': 'all', [RETRY_LEVEL_HEADER]: l.label });
      assert.ok(!RETRY_LEVEL_HEADER.startsWith('x-'));
    }
  });

  it('classic queues carry no quorum-only arguments', () => {
    const c = buildTopology({ AMQP_PREFIX: 'pp', QUEUE_TYPE: 'classic', QUEUE_DELIVERY_LIMIT: 10, RETRY_DELAYS_MS: [1_000] });
    for (const q of c.queues) {
      assert.equal(q.arguments['x-delivery-limit'], undefined, q.name);
      assert.equal(q.arguments['x-dead-letter-strategy'], undefined, q.name);
    }
  });

  it('exports management definitions', () => {
    const d = toDefinitions(t) as { queues: unknown[]; exchanges: unknown[]; bindings: unknown[] };
    assert.equal(d.queues.length, t.queues.length);
    assert.equal(d.exchanges.length, 4, 'work, retry, dead letters, events');
    assert.equal(d.bindings.length, t.bindings.length);
  });

  it('labels delays in the largest whole unit', () => {
    assert.deepEqual([500, 1_000, 90_000, 120_000, 3_600_000].map(delayLabel), ['500ms', '1s', '90s', '2m', '1h']);
  });
});
