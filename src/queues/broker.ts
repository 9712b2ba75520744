import amqp, { type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { randomUUID } from 'node:crypto';
import { RetryableError } from '../shared/errors.js';
import type { Config, StageName } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { declareTopology, type Topology } from './topology.js';
import { encodeMessage, type StageMessage } from './messages.js';

export type OnDelivery = (msg: ConsumeMessage, channel: ConfirmChannel) => void;

export interface ConsumerHandle {
  /** Stops new deliveries (basic.cancel); messages already delivered stay with their handlers. */
  cancel(): Promise<void>;
}

/**
 * One AMQP connection per process, kept alive by amqp-connection-manager: it reconnects with
 * backoff and re-runs every channel's setup (topology, prefetch, consume) on the new channel,
 * so consumers resume by themselves after a broker restart.
 */
export class Broker {
  readonly connection: AmqpConnectionManager;
  private readonly publisher: ChannelWrapper;
  private readonly consumerChannels: ChannelWrapper[] = [];
  /** The publisher's current channel, for declaring the topology again when a message had no route. */
  private publisherChannel: ConfirmChannel | null = null;
  /** Message ids the broker returned as unroutable (basic.return arrives before the confirm). */
  private readonly returned = new Map<string, number>();

  constructor(
    private readonly config: Config,
    readonly topology: Topology,
    private readonly log: Logger,
    connectionName: string,
  ) {
    this.connection = amqp.connect([config.AMQP_URL], {
      heartbeatIntervalInSeconds: config.AMQP_HEARTBEAT_SECONDS,
      reconnectTimeInSeconds: 1,
      connectionOptions: { clientProperties: { connection_name: connectionName } },
    });
    this.connection.on('connect', () => log.info('amqp connected'));
    this.connection.on('disconnect', ({ err }: { err?: Error }) => log.warn({ err: err?.message }, 'amqp disconnected'));
    this.connection.on('blocked', ({ reason }: { reason: string }) => log.warn({ reason }, 'amqp connection blocked by broker'));
    this.publisher = this.connection.createChannel({
      name: 'publisher',
      confirm: true,
      publishTimeout: config.AMQP_PUBLISH_TIMEOUT_MS,
      setup: async (ch: ConfirmChannel) => {
        ch.on('return', (msg: ConsumeMessage) => {
          const id = msg.properties.messageId as string | undefined;
          if (id) this.returned.set(id, (this.returned.get(id) ?? 0) + 1);
        });
        await declareTopology(ch, topology);
        this.publisherChannel = ch;
      },
    });
    this.publisher.on('error', (err: Error) => log.warn({ err: err.message }, 'amqp publisher channel error'));
  }

  isConnected(): boolean {
    return this.connection.isConnected();
  }

  /** Resolves once connected and the topology is declared; rejects after timeoutMs. */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    await withTimeout(this.publisher.waitForConnect(), timeoutMs, 'timed out connecting to RabbitMQ');
  }

  /**
   * Publishes persistently and resolves only when the broker has confirmed the message.
   * Fails fast while disconnected so callers (the API) can answer 503 at once. Publishes are
   * mandatory: a message no queue takes (a queue deleted by hand) is not confirmed as if stored,
   * it fails as retryable, and the topology is declared again so that the next try finds its queue.
   */
  async publishRaw(exchange: string, routingKey: string, content: Buffer, options: Options.Publish = {}): Promise<void> {
    if (!this.isConnected()) throw new RetryableError('amqp_unavailable', 'RabbitMQ is not connected');
    const messageId = options.messageId ?? randomUUID();
    try {
      await this.publisher.publish(exchange, routingKey, content, {
        persistent: true,
        contentType: 'application/json',
        timestamp: Math.floor(Date.now() / 1000),
        ...options,
        messageId,
        mandatory: true,
      });
    } catch (err) {
      throw new RetryableError('amqp_publish_failed', `publish to ${exchange}/${routingKey} not confirmed: ${(err as Error).message}`, { cause: err });
    }
    const returns = this.returned.get(messageId);
    if (returns) {
      if (returns > 1) this.returned.set(messageId, returns - 1);
      else this.returned.delete(messageId);
      this.log.warn({ exchange, routingKey }, 'message had no route (a queue or binding is missing): declaring the topology again');
      const ch = this.publisherChannel;
      if (ch) await declareTopology(ch, this.topology).catch((e: Error) => this.log.warn({ err: e.message }, 'could not declare the topology again'));
      throw new RetryableError('amqp_unroutable', `RabbitMQ had no queue for ${exchange}/${routingKey}`);
    }
  }

  /** To the stage's queue in the message's lane. */
  publishToStage(stage: StageName, msg: StageMessage, headers: Record<string, unknown> = {}): Promise<void> {
    return this.publishRaw(this.topology.workExchange, this.topology.routingKey(stage, msg.lane), encodeMessage(msg), { headers });
  }

  /**
   * Consumes a queue on a channel of its own. The setup runs again after every reconnect; each
   * delivery is handed over with the channel that delivered it, because a delivery tag is only
   * valid on that channel (acking it on a newer channel would close that channel).
   */
  consume(queue: string, prefetch: number, onDelivery: OnDelivery): ConsumerHandle {
    let current: { ch: ConfirmChannel; tag: string } | null = null;
    let cancelled = false;
    const subscribe = async (ch: ConfirmChannel): Promise<void> => {
      await declareTopology(ch, this.topology);
      if (cancelled) return;
      await ch.prefetch(prefetch);
      const { consumerTag } = await ch.consume(queue, (msg) => {
        if (msg) return onDelivery(msg, ch);
        // The broker cancelled the consumer (queue deleted, node failover) while the channel
        // stays open: subscribe again on the same channel instead of leaving the role idle.
        if (cancelled) return;
        this.log.warn({ queue }, 'consumer cancelled by the broker; subscribing again');
        setTimeout(() => {
          subscribe(ch).catch((err: Error) => this.log.error({ err: err.message, queue }, 'could not subscribe again; waiting for a reconnect'));
        }, 1_000);
      });
      current = { ch, tag: consumerTag };
      this.log.info({ queue, prefetch }, 'consuming');
    };
    const wrapper = this.connection.createChannel({ name: `consumer:${queue}`, confirm: true, setup: subscribe });
    wrapper.on('error', (err: Error) => this.log.warn({ err: err.message, queue }, 'amqp consumer channel error'));
    this.consumerChannels.push(wrapper);
    return {
      cancel: async () => {
        cancelled = true;
        const c = current;
        current = null;
        if (c) await c.ch.cancel(c.tag).catch(() => {});
      },
    };
  }

  /** A domain event on the events exchange (topic). Unroutable is fine: nobody may follow it yet. */
  async publishEvent(routingKey: string, body: unknown): Promise<void> {
    if (!this.isConnected()) throw new RetryableError('amqp_unavailable', 'RabbitMQ is not connected');
    try {
      await this.publisher.publish(this.topology.eventsExchange, routingKey, Buffer.from(JSON.stringify(body)), {
        persistent: true,
        contentType: 'application/json',
        messageId: randomUUID(),
        timestamp: Math.floor(Date.now() / 1000),
      });
    } catch (err) {
      throw new RetryableError('amqp_publish_failed', `publish to ${this.topology.eventsExchange}/${routingKey} not confirmed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Messages ready in a stage's queues, both lanes. */
  async stageDepth(stage: StageName): Promise<number> {
    const [a, b] = await Promise.all([this.queueDepth(this.topology.workQueue(stage, 'interactive')), this.queueDepth(this.topology.workQueue(stage, 'bulk'))]);
    return a + b;
  }

  /** A queue's ready messages and consumers (AMQP's view: no unacked count). */
  async checkQueue(queue: string): Promise<{ messageCount: number; consumerCount: number }> {
    if (!this.isConnected()) throw new RetryableError('amqp_unavailable', 'RabbitMQ is not connected');
    const q = await withTimeout(this.publisher.checkQueue(queue), 5_000, `checkQueue ${queue} timed out`);
    return { messageCount: q.messageCount, consumerCount: q.consumerCount };
  }

  /** Messages ready in a queue (not counting those delivered and unacked). */
  async queueDepth(queue: string): Promise<number> {
    if (!this.isConnected()) throw new RetryableError('amqp_unavailable', 'RabbitMQ is not connected');
    const q = await withTimeout(this.publisher.checkQueue(queue), 5_000, `checkQueue ${queue} timed out`);
    return q.messageCount;
  }

  /** A plain channel for tools that browse queues (DLQ list/replay); the caller closes it. */
  async openToolChannel(): Promise<ConfirmChannel> {
    // Tools answer an operator (or an HTTP request): fail fast while the broker is away.
    await this.waitReady(5_000);
    const conn = this.connection.connection;
    if (!conn) throw new RetryableError('amqp_unavailable', 'RabbitMQ is not connected');
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => {}); // surfaced through the failing call itself
    return ch;
  }

  async close(): Promise<void> {
    for (const c of this.consumerChannels) await c.close().catch(() => {});
    await this.publisher.close().catch(() => {});
    await this.connection.close().catch(() => {});
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RetryableError('timeout', message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
