import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../src/shared/config.js';
import { createLogger } from '../src/shared/logger.js';
import { DeferError, PermanentError, RetryableError } from '../src/shared/errors.js';
import { Broker } from '../src/queues/broker.js';
import { buildTopology } from '../src/queues/topology.js';
import { StageConsumer, type Failure } from '../src/queues/stage-consumer.js';
import { StageEvents, type StageEvent } from '../src/queues/stage-events.js';
import type { StageMessage } from '../src/queues/messages.js';
import { waitFor } from './helpers/stack.js';

/**
 * The stage consumer's outcomes as typed events, on a real RabbitMQ: each kind of handler outcome
 * gives its event, with the attempt, and a deferral spends no attempt and never dead-letters.
 * The failure recorder is an in-memory one: what is under test is the consumer and the broker.
 */
describe('stage consumer outcome events', () => {
  const prefix = `pp_ev_${Date.now().toString(36)}`;
  let config: Config;
  let broker: Broker;
  let redis: Redis;
  let consumer: StageConsumer;
  const events: StageEvent[] = [];
  const failures: Failure[] = [];
  const behaviour = new Map<string, (ctx: { attempt: number; deferrals: number }) => void>();

  before(async () => {
    config = loadConfig({ AMQP_PREFIX: prefix, REDIS_KEY_PREFIX: `${prefix}:`, RETRY_DELAYS_MS: '100,200', RETRY_JITTER: '0', STAGE_MAX_ATTEMPTS: 'geocode=2', LOG_LEVEL: 'warn' });
    const log = createLogger(config, { role: 'test' }, 'stderr');
    broker = new Broker(config, buildTopology(config), log, 'events-test');
    await broker.waitReady();
    redis = new Redis(config.REDIS_URL);
    const bus = new StageEvents();
    bus.on((e) => events.push(e));
    bus.on(() => {
      throw new Error('a throwing listener changes nothing');
    });
    consumer = new StageConsumer({
      config,
      broker,
      redis,
      log,
      stage: 'geocode',
      events: bus,
      recorder: {
        recordFailure: (_m, f) => {
          failures.push(f);
          return Promise.resolve('recorded');
        },
        recordRetry: () => Promise.resolve(),
      },
      handler: (msg, ctx) => {
        behaviour.get(msg.photoId)?.(ctx);
        return Promise.resolve();
      },
    });
    consumer.start();
  });

  after(async () => {
    await consumer?.stop(1_000);
    const t = buildTopology(config);
    const ch = await broker.openToolChannel();
    for (const q of t.queues) await ch.deleteQueue(q.name).catch(() => {});
    for (const e of t.exchanges) await ch.deleteExchange(e.name).catch(() => {});
    await ch.close().catch(() => {});
    await broker.close();
    redis.disconnect();
  });

  async function run(behave: (ctx: { attempt: number; deferrals: number }) => void, until: StageEvent['type']): Promise<StageEvent[]> {
    const photoId = randomUUID();
    behaviour.set(photoId, behave);
    const msg: StageMessage = { v: 1, photoId, tenantId: 't1' };
    await broker.publishToStage('geocode', msg);
    await waitFor(`a ${until} event for ${photoId}`, async () => events.some((e) => e.photoId === photoId && e.type === until), 20_000, 20);
    return events.filter((e) => e.photoId === photoId);
  }

  it('succeeded, with its duration', async () => {
    const seen = await run(() => {}, 'succeeded');
    assert.deepEqual(seen.map((e) => e.type), ['started', 'succeeded']);
    const done = seen[1] as Extract<StageEvent, { type: 'succeeded' }>;
    assert.equal(done.stage, 'geocode');
    assert.equal(done.tenantId, 't1');
    assert.equal(done.attempt, 1);
    assert.ok(done.durationMs >= 0);
  });

  it('retried, then succeeded on the next attempt', async () => {
    const seen = await run((ctx) => {
      if (ctx.attempt === 1) throw new RetryableError('flaky', 'try again');
    }, 'succeeded');
    assert.deepEqual(seen.map((e) => [e.type, e.attempt]), [['started', 1], ['retried', 1], ['started', 2], ['succeeded', 2]]);
    assert.equal((seen[1] as Extract<StageEvent, { type: 'retried' }>).code, 'flaky');
  });

  it('dead-lettered at once for a permanent failure, and after the last attempt for a retryable one', async () => {
    const permanent = await run(() => {
      throw new PermanentError('corrupt_image', 'broken');
    }, 'dead_lettered');
    assert.deepEqual(permanent.map((e) => e.type), ['started', 'dead_lettered']);
    assert.equal((permanent[1] as Extract<StageEvent, { type: 'dead_lettered' }>).errorClass, 'permanent');
    const exhausted = await run(() => {
      throw new RetryableError('down', 'still down');
    }, 'dead_lettered');
    assert.deepEqual(exhausted.map((e) => [e.type, e.attempt]), [['started', 1], ['retried', 1], ['started', 2], ['dead_lettered', 2]]);
  });

  it('deferred: spends no attempt and never reaches the DLQ, however often', async () => {
    // geocode has 2 attempts here: four deferrals would have dead-lettered it as retries.
    const seen = await run((ctx) => {
      if (ctx.deferrals < 4) throw new DeferError(50, 'window full');
    }, 'succeeded');
    assert.deepEqual(seen.map((e) => e.type), ['started', 'deferred', 'started', 'deferred', 'started', 'deferred', 'started', 'deferred', 'started', 'succeeded']);
    assert.ok(seen.every((e) => e.attempt === 1), 'every delivery is attempt 1');
    const deferred = seen.filter((e): e is Extract<StageEvent, { type: 'deferred' }> => e.type === 'deferred');
    assert.deepEqual(deferred.map((e) => e.deferrals), [1, 2, 3, 4]);
    assert.deepEqual(deferred.map((e) => e.delayMs), [100, 100, 100, 100], 'the shortest delay level (nothing shorter than asked exists)');
    assert.equal(deferred[0]?.reason, 'window full');
    assert.equal(failures.filter((f) => f.code === 'window full').length, 0);
    assert.equal((await broker.queueDepth(broker.topology.dlq('geocode'))), 2, 'only the two dead letters of the test before');
  });

  it('moot when a failure arrives after the stage succeeded', async () => {
    const photoId = randomUUID();
    behaviour.set(photoId, () => {
      throw new PermanentError('late', 'late failure');
    });
    const recorder = (consumer as unknown as { deps: { recorder: { recordFailure: unknown } } }).deps.recorder;
    const original = recorder.recordFailure;
    recorder.recordFailure = () => Promise.resolve('moot');
    try {
      await broker.publishToStage('geocode', { v: 1, photoId, tenantId: 't1' });
      await waitFor('a moot event', async () => events.some((e) => e.photoId === photoId && e.type === 'moot'), 20_000, 20);
    } finally {
      recorder.recordFailure = original;
    }
    assert.deepEqual(events.filter((e) => e.photoId === photoId).map((e) => e.type), ['started', 'moot']);
  });
});
