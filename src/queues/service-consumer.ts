import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { z } from 'zod';
import { classify, coerceError, DeferError, PipelineError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { Broker, ConsumerHandle } from './broker.js';
import { H } from './messages.js';
import { RETRY_LEVEL_HEADER } from './topology.js';
import { deferralDelay, retryDelay, type ScheduledDelay } from './retry-schedule.js';

export interface ServiceContext {
  log: Logger;
  /** Aborted at the handler's deadline or when the process stops hard. */
  signal: AbortSignal;
  attempt: number;
  maxAttempts: number;
  deferrals: number;
}

export type ServiceHandler<M> = (msg: M, ctx: ServiceContext) => Promise<void>;

export interface ServiceConsumerOptions<M> {
  broker: Broker;
  log: Logger;
  /** The service queue's name in SERVICE_QUEUES (the queue is <prefix>.<name>). */
  queue: string;
  /** The routing key its work is published with: retries go back through the delay queues with it. Null: no retries (wake-ups). */
  workKey: string | null;
  schema: z.ZodType<M>;
  handler: ServiceHandler<M>;
  prefetch: number;
  timeoutMs: number;
  maxAttempts: number;
  retryDelaysMs: readonly number[];
  retryJitter: number;
  /** Deliveries without an outcome (the worker died each time) before the message is given up. */
  crashLimit: number;
  /** A permanent failure or the last attempt: record it (idempotently). Throwing returns the message to the queue. */
  onGiveUp?: (msg: M, err: Error, attempt: number) => Promise<void>;
}

interface Delivery {
  msg: ConsumeMessage;
  ch: ConfirmChannel;
  settled: boolean;
  abort: AbortController;
}

/**
 * Runs a service role's handler over its queue, with the outcomes written once as in
 * StageConsumer: success -> ack; retryable failure -> through a delay queue with attempt+1, then
 * ack; DeferError -> through a delay queue with the same attempt; permanent failure or last
 * attempt -> onGiveUp, then ack. A message is acked only once its outcome is durable (a confirmed
 * republish, a recorded failure). Up to `prefetch` handlers run at once.
 */
export class ServiceConsumer<M> {
  private readonly inFlight = new Set<Delivery>();
  private handle: ConsumerHandle | null = null;
  private readonly log: Logger;

  constructor(private readonly o: ServiceConsumerOptions<M>) {
    this.log = o.log.child({ queue: o.queue });
  }

  start(): void {
    this.handle = this.o.broker.consume(this.o.broker.topology.serviceQueue(this.o.queue), this.o.prefetch, (msg, ch) => {
      const d: Delivery = { msg, ch, settled: false, abort: new AbortController() };
      this.inFlight.add(d);
      void this.process(d).finally(() => this.inFlight.delete(d));
    });
  }

  async stop(graceMs: number): Promise<void> {
    await this.handle?.cancel();
    const deadline = Date.now() + graceMs;
    while (this.inFlight.size > 0 && Date.now() < deadline) await sleep(50);
    for (const d of this.inFlight) {
      d.abort.abort(new Error('shutting down'));
      this.settle(d, 'requeue');
    }
  }

  private async process(d: Delivery): Promise<void> {
    const headers = (d.msg.properties.headers ?? {}) as Record<string, unknown>;
    const attempt = positiveInt(headers[H.attempt]) ?? 1;
    const deferrals = positiveInt(headers[H.deferrals]) ?? 0;
    let json: unknown;
    try {
      json = JSON.parse(d.msg.content.toString('utf8'));
    } catch {
      json = undefined;
    }
    const parsed = this.o.schema.safeParse(json);
    if (!parsed.success) {
      this.log.warn({ issues: parsed.error.issues.map((i) => i.message).join('; ') }, 'malformed message: dropped');
      this.settle(d, 'ack');
      return;
    }
    const message = parsed.data;
    const log = this.log.child({ attempt, ...(typeof message === 'object' && message !== null ? (message as Record<string, unknown>) : {}) });
    const crashes = typeof headers['x-delivery-count'] === 'number' ? headers['x-delivery-count'] : 0;
    if (crashes >= this.o.crashLimit) {
      await this.giveUp(d, message, new PipelineErrorLike('worker_crashed', `the worker stopped ${crashes} times while handling this message`), attempt, log);
      return;
    }
    const timer = setTimeout(() => d.abort.abort(new PipelineErrorLike('timeout', `no outcome within ${this.o.timeoutMs} ms`, 'retryable')), this.o.timeoutMs);
    try {
      await this.o.handler(message, { log, signal: d.abort.signal, attempt, maxAttempts: this.o.maxAttempts, deferrals });
      this.settle(d, 'ack');
    } catch (raw) {
      if (d.settled) return; // handed back at shutdown: its redelivery decides
      const err = d.abort.signal.aborted && d.abort.signal.reason instanceof Error ? d.abort.signal.reason : coerceError(raw);
      if (err instanceof DeferError) {
        if (this.o.workKey === null) return this.requeueLater(d);
        await this.republish(d, headers, deferralDelay(err.delayMs, this.o.broker.topology.retryLevels), { [H.attempt]: attempt, [H.deferrals]: deferrals + 1 });
        return;
      }
      if (classify(err) === 'retryable' && attempt < this.o.maxAttempts) {
        log.warn({ err: err.message, code: err instanceof PipelineError ? err.code : 'unexpected' }, 'failed; scheduling a retry');
        if (this.o.workKey === null) return this.requeueLater(d);
        const when = retryDelay(attempt, this.o.retryDelaysMs, this.o.broker.topology.retryLevels, this.o.retryJitter);
        await this.republish(d, headers, when, { [H.attempt]: attempt + 1, [H.lastError]: err.message.slice(0, 500) });
        return;
      }
      await this.giveUp(d, message, err, attempt, log);
    } finally {
      clearTimeout(timer);
    }
  }

  private async giveUp(d: Delivery, message: M, err: Error, attempt: number, log: Logger): Promise<void> {
    try {
      await this.o.onGiveUp?.(message, err, attempt);
      log.info({ err: err.message, code: err instanceof PipelineError ? err.code : 'unexpected' }, 'given up');
      this.settle(d, 'ack');
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'could not record the failure; returning the message to the queue');
      await this.requeueLater(d);
    }
  }

  /** Through a delay queue back to this queue; acked once the broker confirmed, else returned to the queue. */
  private async republish(d: Delivery, headers: Record<string, unknown>, when: ScheduledDelay, set: Record<string, unknown>): Promise<void> {
    const { broker } = this.o;
    try {
      await broker.publishRaw(broker.topology.retryExchange, this.o.workKey ?? '', d.msg.content, {
        expiration: String(when.ttlMs),
        headers: { ...stripBrokerHeaders(headers), [RETRY_LEVEL_HEADER]: when.level.label, ...set },
      });
      this.settle(d, 'ack');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not schedule a retry; returning the message to the queue');
      await this.requeueLater(d);
    }
  }

  private async requeueLater(d: Delivery): Promise<void> {
    await sleep(1_000);
    this.settle(d, 'requeue');
  }

  private settle(d: Delivery, outcome: 'ack' | 'requeue'): void {
    if (d.settled) return;
    d.settled = true;
    try {
      if (outcome === 'ack') d.ch.ack(d.msg);
      else d.ch.nack(d.msg, false, true);
    } catch (err) {
      // The delivering channel is gone (broker restart): the broker redelivers the message itself.
      this.log.debug({ err: (err as Error).message }, 'could not settle a message on a closed channel');
    }
  }
}

/** A typed failure made by the consumer itself (a crash loop, a deadline). */
class PipelineErrorLike extends PipelineError {
  readonly errorClass: 'permanent' | 'retryable';
  constructor(code: string, message: string, errorClass: 'permanent' | 'retryable' = 'permanent') {
    super(code, message);
    this.errorClass = errorClass;
  }
}

function stripBrokerHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k === 'x-death' || k === 'x-delivery-count' || k.startsWith('x-first-death') || k.startsWith('x-last-death')) continue;
    out[k] = v;
  }
  return out;
}

function positiveInt(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
