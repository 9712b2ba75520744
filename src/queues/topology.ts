import type { Channel } from 'amqplib';
import { STAGES, type Config, type StageName } from '../shared/config.js';
import { BATCH_DISPATCH, BATCH_DOWNLOAD, BATCH_PHOTOS } from './batch-messages.js';

/**
 * The RabbitMQ topology, declared idempotently by every process at start-up (and again after
 * every reconnect) and exported to infra/rabbitmq/definitions.json for the management UI.
 *
 *   <p>            direct   routing key = stage      -> queue <p>.<stage>          (work, interactive lane)
 *                           routing key = bulk.stage -> queue <p>.bulk.<stage>     (work, bulk lane)
 *   <p>.retry      headers  pp-retry-level = <label> -> queue <p>.retry.<label>    (delay; expired
 *                                                      messages dead-letter back to <p> with
 *                                                      their lane's routing key)
 *   <p>.dlx        direct   routing key = stage or bulk.stage -> queue <p>.dlq.<stage> (dead letters)
 *                           routing key = service.<name>      -> queue <p>.dlq.<name>  (what the broker
 *                                                      dead-letters from a service queue: past
 *                                                      the delivery limit, rejected, or expired)
 *
 * Two lanes per stage: live uploads go through the interactive queues; bulk work (batch
 * downloads, re-geocoding, a tenant with a large backlog) through the bulk queues. A worker takes
 * from both with one concurrency budget, interactive first (stage-consumer.ts), so a backlog in
 * the bulk lane never holds a live photo behind it.
 */

export interface QueueSpec {
  name: string;
  arguments: Record<string, unknown>;
}
export interface BindingSpec {
  exchange: string;
  queue: string;
  routingKey: string;
  arguments?: Record<string, unknown>;
}
export type Lane = 'interactive' | 'bulk';
export const LANES: readonly Lane[] = ['interactive', 'bulk'];

/**
 * A queue of a role that is not a pipeline stage (webhook delivery, batch downloads, the batch
 * dispatcher): bound to the work exchange by its routing keys and/or to the events exchange by
 * event patterns. Declared with the rest of the topology by every process.
 */
export interface ServiceQueue {
  /** The queue is `<prefix>.<name>`. */
  name: string;
  /** Routing keys on the work exchange (direct). */
  workKeys?: string[];
  /** Patterns on the events exchange (topic), e.g. `photo.final.*`. */
  eventKeys?: string[];
  /** Single active consumer (one consumer at a time gets the messages, in order). */
  singleActiveConsumer?: boolean;
  /** Further queue arguments (a TTL or a length limit for a queue of wake-ups). */
  arguments?: Record<string, unknown>;
  /** False for a queue whose expired or dropped messages are worthless (wake-ups): no dead-letter queue. */
  deadLetters?: boolean;
}

/**
 * Service queues of every role that is not a stage. Roles add theirs here (one entry each), so
 * that every process declares them.
 */
export const SERVICE_QUEUES: ServiceQueue[] = [
  // Webhook delivery (src/workers/webhook): every photo.final event, and its own deliveries and
  // retries on routing key `webhook` (back from the delay queues through the work exchange).
  { name: 'webhook', workKeys: ['webhook'], eventKeys: ['photo.final.*'] },
  // Batch ingestion (src/workers/batch-download, src/workers/batch-dispatch).
  { name: BATCH_DOWNLOAD, workKeys: [BATCH_DOWNLOAD] },
  // One dispatcher at a time takes the wake-ups (the others stand by); correctness does not rest on
  // it: the one open call per customer is enforced in Postgres, with a fence (README "Batch ingestion").
  { name: BATCH_DISPATCH, workKeys: [BATCH_DISPATCH], singleActiveConsumer: true },
  // Every photo's final event, as a wake-up only: bounded, so that it never grows where no
  // dispatcher runs (a lost wake-up is made up by the dispatchers' periodic sweep).
  { name: BATCH_PHOTOS, eventKeys: ['photo.final.*'], arguments: { 'x-message-ttl': 600_000, 'x-max-length': 100_000 }, deadLetters: false },
];

export interface Topology {
  workExchange: string;
  /** Topic exchange for domain events (`photo.final.<status>`): roles that follow photos bind to it. */
  eventsExchange: string;
  /** The queue of a service role's entry in SERVICE_QUEUES. */
  serviceQueue: (name: string) => string;
  retryExchange: string;
  deadLetterExchange: string;
  exchanges: { name: string; type: 'direct' | 'headers' | 'topic' }[];
  queues: QueueSpec[];
  bindings: BindingSpec[];
  /** The stage's work queue in a lane (interactive by default). */
  workQueue: (stage: StageName, lane?: Lane) => string;
  /** The routing key of a stage's work in a lane, on the work exchange (and through the delay queues). */
  routingKey: (stage: StageName, lane?: Lane) => string;
  dlq: (stage: StageName) => string;
  retryLevels: { label: string; delayMs: number; queue: string }[];
}

// Not "x-...": a headers exchange with x-match=all ignores binding arguments that start with
// "x-", so such a binding matches every message and each retry was copied into every delay queue.
export const RETRY_LEVEL_HEADER = 'pp-retry-level';

export function delayLabel(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

export function buildTopology(config: Pick<Config, 'AMQP_PREFIX' | 'QUEUE_TYPE' | 'QUEUE_DELIVERY_LIMIT' | 'RETRY_DELAYS_MS'>): Topology {
  const p = config.AMQP_PREFIX;
  const workExchange = p;
  const retryExchange = `${p}.retry`;
  const deadLetterExchange = `${p}.dlx`;
  const eventsExchange = `${p}.events`;
  const serviceQueue = (name: string) => `${p}.${name}`;
  const quorum = config.QUEUE_TYPE === 'quorum';
  const typeArgs = { 'x-queue-type': config.QUEUE_TYPE };

  const workQueue = (stage: StageName, lane: Lane = 'interactive') => (lane === 'bulk' ? `${p}.bulk.${stage}` : `${p}.${stage}`);
  const routingKey = (stage: StageName, lane: Lane = 'interactive') => (lane === 'bulk' ? `bulk.${stage}` : stage);
  /** The dead-letter queue of a stage, or of a service queue (by its name). */
  const dlq = (name: string) => `${p}.dlq.${name}`;
  const retryLevels = [...new Set(config.RETRY_DELAYS_MS)].map((delayMs) => ({
    label: delayLabel(delayMs),
    delayMs,
    queue: `${p}.retry.${delayLabel(delayMs)}`,
  }));

  const queues: QueueSpec[] = [];
  const bindings: BindingSpec[] = [];
  for (const stage of STAGES) {
    for (const lane of LANES) {
      queues.push({
        name: workQueue(stage, lane),
        arguments: {
          ...typeArgs,
          // Rejected messages and (quorum) messages past the delivery limit go to the stage's DLQ.
          'x-dead-letter-exchange': deadLetterExchange,
          ...(quorum ? { 'x-delivery-limit': config.QUEUE_DELIVERY_LIMIT } : {}),
        },
      });
      bindings.push({ exchange: workExchange, queue: workQueue(stage, lane), routingKey: routingKey(stage, lane) });
    }
    queues.push({ name: dlq(stage), arguments: { ...typeArgs } });
    // The broker dead-letters with the message's own routing key: one binding per lane.
    for (const lane of LANES) bindings.push({ exchange: deadLetterExchange, queue: dlq(stage), routingKey: routingKey(stage, lane) });
  }
  for (const sq of SERVICE_QUEUES) {
    // A service queue takes messages under several routing keys (its own, and event patterns a
    // direct exchange cannot match), so its dead letters get one key of their own.
    const deadKey = `service.${sq.name}`;
    const dead = sq.deadLetters !== false;
    queues.push({
      name: serviceQueue(sq.name),
      arguments: {
        ...typeArgs,
        ...(dead ? { 'x-dead-letter-exchange': deadLetterExchange, 'x-dead-letter-routing-key': deadKey } : {}),
        ...(quorum ? { 'x-delivery-limit': config.QUEUE_DELIVERY_LIMIT } : {}),
        ...(sq.singleActiveConsumer ? { 'x-single-active-consumer': true } : {}),
        ...(sq.arguments ?? {}),
      },
    });
    for (const key of sq.workKeys ?? []) bindings.push({ exchange: workExchange, queue: serviceQueue(sq.name), routingKey: key });
    for (const key of sq.eventKeys ?? []) bindings.push({ exchange: eventsExchange, queue: serviceQueue(sq.name), routingKey: key });
    if (dead) {
      queues.push({ name: dlq(sq.name), arguments: { ...typeArgs } });
      bindings.push({ exchange: deadLetterExchange, queue: dlq(sq.name), routingKey: deadKey });
    }
  }
  for (const level of retryLevels) {
    queues.push({
      name: level.queue,
      arguments: {
        ...typeArgs,
        'x-dead-letter-exchange': workExchange,
        // Quorum queues dead-letter at-most-once by default; at-least-once needs reject-publish overflow.
        ...(quorum ? { 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' } : {}),
      },
    });
    bindings.push({
      exchange: retryExchange,
      queue: level.queue,
      routingKey: '',
      arguments: { 'x-match': 'all', [RETRY_LEVEL_HEADER]: level.label },
    });
  }

  return {
    workExchange,
    eventsExchange,
    serviceQueue,
    retryExchange,
    deadLetterExchange,
    exchanges: [
      { name: workExchange, type: 'direct' },
      { name: retryExchange, type: 'headers' },
      { name: deadLetterExchange, type: 'direct' },
      { name: eventsExchange, type: 'topic' },
    ],
    queues,
    bindings,
    workQueue,
    routingKey,
    dlq,
    retryLevels,
  };
}

export async function declareTopology(ch: Channel, t: Topology): Promise<void> {
  for (const ex of t.exchanges) await ch.assertExchange(ex.name, ex.type, { durable: true });
  for (const q of t.queues) await ch.assertQueue(q.name, { durable: true, arguments: q.arguments });
  for (const b of t.bindings) await ch.bindQueue(b.queue, b.exchange, b.routingKey, b.arguments);
}

/** The same topology in the management plugin's definitions format (import in the UI or with rabbitmqadmin). */
export function toDefinitions(t: Topology, vhost = '/'): Record<string, unknown> {
  return {
    exchanges: t.exchanges.map((e) => ({ name: e.name, vhost, type: e.type, durable: true, auto_delete: false, internal: false, arguments: {} })),
    queues: t.queues.map((q) => ({ name: q.name, vhost, durable: true, auto_delete: false, arguments: q.arguments })),
    bindings: t.bindings.map((b) => ({
      source: b.exchange,
      vhost,
      destination: b.queue,
      destination_type: 'queue',
      routing_key: b.routingKey,
      arguments: b.arguments ?? {},
    })),
  };
}
