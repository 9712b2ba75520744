import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { Redis } from 'ioredis';
import type { Config, StageName } from '../shared/config.js';
import { classify, coerceError, DeferError, PipelineError, StageTimeoutError, type ErrorClass } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { permanentIfDataRejection } from '../shared/db.js';
import { dbText } from '../shared/text.js';
import type { Broker, ConsumerHandle } from './broker.js';
import { contentTypeOf, decodeMessage, H, messageIdOf, type StageMessage } from './messages.js';
import { LANES, RETRY_LEVEL_HEADER, type Lane } from './topology.js';
import { deferralDelay, retryDelay, type ScheduledDelay } from './retry-schedule.js';
import type { StageEvent, StageEvents } from './stage-events.js';

export interface StageContext {
  log: Logger;
  /** Aborted when the stage's time limit is reached or the process is shutting down hard. */
  signal: AbortSignal;
  /** When the stage's time limit ends (epoch ms): client and libvips timeouts are set from what is left. */
  deadlineAt: number;
  attempt: number;
  maxAttempts: number;
  /** Times this message was deferred before (DeferError): not attempts. */
  deferrals: number;
}

/** Milliseconds left before the handler's deadline (at least 1, so a timeout option stays valid). */
export function remainingMs(ctx: Pick<StageContext, 'deadlineAt'>): number {
  return Math.max(1, ctx.deadlineAt - Date.now());
}

export type StageHandler = (msg: StageMessage, ctx: StageContext) => Promise<void>;

export interface Failure {
  stage: StageName;
  errorClass: ErrorClass;
  code: string;
  reason: string;
  attempts: number;
}

/** Writes outcomes where users and the reconciler see them (the photo's row). Must be idempotent. */
export interface FailureRecorder {
  /**
   * A terminal failure: the photo becomes failed with stage and reason. 'moot' when the stage had
   * already succeeded or the photo is final (a duplicate delivery failed late): nothing to record
   * and nothing to dead-letter. 'missing' when there is no such photo.
   */
  recordFailure(msg: StageMessage, failure: Failure): Promise<'recorded' | 'moot' | 'missing'>;
  /**
   * A retry was scheduled: the photo is alive, only waiting. Counting this as progress keeps the
   * reconciler from taking a photo that is working through its retries for a stuck one.
   */
  recordRetry(msg: Pick<StageMessage, 'photoId' | 'tenantId'>): Promise<void>;
}

interface InFlight {
  lane: Lane;
  msg: ConsumeMessage;
  ch: ConfirmChannel;
  settled: boolean;
  abort: AbortController;
  started: number;
  /** Who the message is about, once its body has been read: events carry it. */
  about: { photoId: string | null; tenantId: string | null; attempt: number };
}

const MAX_REASON = 1_000;

/**
 * When both lanes have messages waiting, every n-th start goes to the bulk lane (n = 1/share), so
 * bulk work keeps moving slowly while live photos go first.
 */
export function nextLane(waiting: Record<Lane, number>, startsSinceBulk: number, bulkShare: number): Lane | null {
  if (waiting.interactive === 0 && waiting.bulk === 0) return null;
  if (waiting.bulk === 0) return 'interactive';
  if (waiting.interactive === 0) return 'bulk';
  return bulkShare > 0 && startsSinceBulk + 1 >= Math.round(1 / bulkShare) ? 'bulk' : 'interactive';
}

/**
 * Handlers that ignored their signal and still run after their deadline hold memory (and maybe a
 * CPU). Past this many at once the process asks to be replaced (onAbandonedOverflow), which
 * reclaims them; the broker redelivers whatever else it held.
 */
const abandonedLimit = (prefetch: number) => Math.max(8, 4 * prefetch);

/**
 * Runs one stage's handler over its queue. Every outcome is explicit and written once, here:
 * success -> ack; retryable failure -> republish to a delay queue with attempt+1, then ack;
 * permanent failure or last attempt -> record the failure, publish to the stage's DLQ, then ack;
 * deferral (DeferError) -> republish to a delay queue with the same attempt, then ack.
 * The message is acked only after its outcome is durable (confirmed publish / committed row), and
 * every outcome is announced as a typed event (stage-events.ts).
 *
 * It consumes the stage's interactive and bulk queues with one budget of `prefetch` handlers at a
 * time: each queue delivers up to `prefetch` messages, they wait here for a slot, and a free slot
 * goes to the interactive lane first (see nextLane). A handler's deadline starts with its slot.
 */
export class StageConsumer {
  private readonly inFlight = new Set<InFlight>();
  private readonly waiting: Record<Lane, InFlight[]> = { interactive: [], bulk: [] };
  private running = 0;
  private startsSinceBulk = 0;
  private stopping = false;
  private handles: ConsumerHandle[] = [];
  private abandoned = 0;
  private overflowReported = false;
  private readonly settings: { maxAttempts: number; timeoutMs: number; prefetch: number };
  private readonly log: Logger;

  constructor(
    private readonly deps: {
      config: Config;
      broker: Broker;
      redis: Redis;
      recorder: FailureRecorder;
      log: Logger;
      stage: StageName;
      handler: StageHandler;
      events?: StageEvents;
      prefetch?: number;
      /** Share of slots the bulk lane gets while both lanes wait (BULK_LANE_SHARE). */
      bulkShare?: number;
      /** Too many handlers overran their deadline and kept running: the process should be replaced. */
      onAbandonedOverflow?: (count: number) => void;
    },
  ) {
    const s = deps.config.stage(deps.stage);
    this.settings = { ...s, prefetch: deps.prefetch ?? s.prefetch };
    this.log = deps.log.child({ stage: deps.stage });
  }

  /** Subscribed to its queues, or deliberately paused (after start, until stop). */
  get consuming(): boolean {
    return (this.handles.length > 0 || this.paused) && !this.stopping;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  private paused = false;

  /**
   * Stops taking messages without stopping the process (the stage is paused fleet-wide): the
   * consumers are cancelled, messages waiting here for a slot go back to the queue at once, and
   * running handlers finish and are acked as usual. Messages then wait ready in the queue with no
   * consumer until resume().
   */
  async pause(): Promise<void> {
    if (this.paused || this.stopping) return;
    this.paused = true;
    const handles = this.handles;
    this.handles = [];
    await Promise.all(handles.map((h) => h.cancel()));
    for (const lane of LANES) {
      for (const entry of this.waiting[lane].splice(0)) {
        this.settle(entry, 'requeue');
        this.inFlight.delete(entry);
      }
    }
    this.log.info('stage paused: consumers cancelled');
  }

  resume(): void {
    if (!this.paused || this.stopping) return;
    this.paused = false;
    this.subscribe();
    this.log.info('stage resumed: consuming again');
  }

  get isPaused(): boolean {
    return this.paused;
  }

  start(opts: { paused?: boolean } = {}): void {
    if (opts.paused) {
      this.paused = true;
      this.log.info('stage is paused: not consuming until it is resumed');
      return;
    }
    this.subscribe();
  }

  private subscribe(): void {
    // Prefetch = handlers running at once per process: the back-pressure bound for this role.
    this.handles = LANES.map((lane) =>
      this.deps.broker.consume(this.deps.broker.topology.workQueue(this.deps.stage, lane), this.settings.prefetch, (msg, ch) => {
        const entry: InFlight = { lane, msg, ch, settled: false, abort: new AbortController(), started: 0, about: { photoId: null, tenantId: null, attempt: 1 } };
        this.inFlight.add(entry);
        this.waiting[lane].push(entry);
        this.pump();
      }),
    );
  }

  /** Starts waiting messages while slots are free, interactive first. */
  private pump(): void {
    while (!this.stopping && this.running < this.settings.prefetch) {
      const lane = nextLane({ interactive: this.waiting.interactive.length, bulk: this.waiting.bulk.length }, this.startsSinceBulk, this.deps.bulkShare ?? 0.2);
      const entry = lane ? this.waiting[lane].shift() : undefined;
      if (!entry) return;
      this.startsSinceBulk = entry.lane === 'bulk' ? 0 : this.startsSinceBulk + 1;
      this.running++;
      entry.started = Date.now();
      void this.process(entry).finally(() => {
        this.running--;
        this.inFlight.delete(entry);
        // Checked once the message's outcome is settled, so a replacement never redoes it.
        if (!this.overflowReported && this.abandoned >= abandonedLimit(this.settings.prefetch)) {
          this.overflowReported = true;
          this.deps.onAbandonedOverflow?.(this.abandoned);
        }
        this.pump();
      });
    }
  }

  /**
   * Graceful stop: no new deliveries; messages still waiting for a slot go back to the broker at
   * once; running handlers get up to graceMs, then what is still held is handed back (nack +
   * requeue) so another worker picks it up.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    await Promise.all(this.handles.map((h) => h.cancel()));
    for (const lane of LANES) {
      for (const entry of this.waiting[lane].splice(0)) {
        this.settle(entry, 'requeue');
        this.inFlight.delete(entry);
      }
    }
    const deadline = Date.now() + graceMs;
    while (this.inFlight.size > 0 && Date.now() < deadline) await sleep(50);
    if (this.inFlight.size > 0) this.log.warn({ count: this.inFlight.size, graceMs }, 'grace period over: handing unfinished messages back to the broker');
    for (const entry of this.inFlight) {
      entry.abort.abort(new Error('shutting down'));
      if (!entry.settled) this.emit(entry, { type: 'handed_back' });
      this.settle(entry, 'requeue');
    }
  }

  private emit(entry: InFlight, e: DistributiveOmit<StageEvent, 'stage' | 'lane' | 'photoId' | 'tenantId' | 'attempt'>): void {
    this.deps.events?.emit({ stage: this.deps.stage, lane: entry.lane, ...entry.about, ...e } as StageEvent);
  }

  private async process(entry: InFlight): Promise<void> {
    const { msg, started } = entry;
    const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
    const attempt = positiveInt(headers[H.attempt]) ?? 1;
    entry.about.attempt = attempt;
    const decoded = decodeMessage(msg.content);
    if (!decoded.ok) {
      this.emit(entry, { type: 'started' });
      this.log.warn({ reason: decoded.reason }, 'malformed message: dead-lettering');
      await this.finishWithFailure(entry, null, { code: 'malformed_message', reason: decoded.reason, errorClass: 'permanent' }, attempt);
      return;
    }
    const message = decoded.message;
    entry.about = { photoId: message.photoId, tenantId: message.tenantId, attempt };
    const log = this.log.child({ photoId: message.photoId, tenantId: message.tenantId, attempt, ...(message.cid ? { cid: message.cid } : {}), ...(entry.lane === 'bulk' ? { lane: 'bulk' } : {}) });
    this.emit(entry, { type: 'started' });

    const crashes = await this.previousDeliveries(msg, headers).catch(() => 0);
    if (crashes >= this.deps.config.CRASH_REDELIVERY_LIMIT) {
      log.error({ crashes }, 'message was redelivered too often without an outcome: dead-lettering as poison');
      await this.finishWithFailure(
        entry,
        message,
        { code: 'worker_crashed', reason: `worker stopped ${crashes} times while processing this message in ${this.deps.stage}`, errorClass: 'permanent' },
        attempt,
      );
      return;
    }

    try {
      const deadlineAt = Date.now() + this.settings.timeoutMs;
      await this.runWithDeadline(entry, message, { log, signal: entry.abort.signal, deadlineAt, attempt, maxAttempts: this.settings.maxAttempts, deferrals: positiveInt(headers[H.deferrals]) ?? 0 });
      this.settle(entry, 'ack');
      const durationMs = Date.now() - started;
      log.info({ durationMs }, 'stage done');
      this.emit(entry, { type: 'succeeded', durationMs });
    } catch (raw) {
      const err = permanentIfDataRejection(coerceError(raw));
      if (entry.settled) {
        // Shutdown handed the message back and aborted the handler: its redelivery decides the
        // outcome. Scheduling a retry or a dead letter here would duplicate it or fail a photo
        // whose message is being processed elsewhere.
        log.debug({ err: err.message }, 'handler ended after its message was handed back');
        return;
      }
      if (err instanceof DeferError) {
        const deferrals = (positiveInt(headers[H.deferrals]) ?? 0) + 1;
        const when = deferralDelay(err.delayMs, this.deps.broker.topology.retryLevels);
        log.info({ reason: err.reason, wantedMs: err.delayMs, delayMs: when.ttlMs, deferrals }, 'stage deferred');
        if (await this.republishDelayed(entry, headers, when, { [H.attempt]: attempt, [H.deferrals]: deferrals })) {
          this.emit(entry, { type: 'deferred', durationMs: Date.now() - started, delayMs: when.ttlMs, reason: err.reason, deferrals });
          await this.deps.recorder.recordRetry(message).catch((e: Error) => log.debug({ err: e.message }, 'could not record deferral progress'));
        }
        return;
      }
      const errorClass = classify(err);
      const code = err instanceof PipelineError ? err.code : 'unexpected';
      const reason = truncate(err.message);
      if (errorClass === 'retryable' && attempt < this.settings.maxAttempts) {
        log.warn({ err: reason, code, durationMs: Date.now() - started }, 'stage failed; scheduling retry');
        const { config, broker } = this.deps;
        const when = retryDelay(attempt, config.RETRY_DELAYS_MS, broker.topology.retryLevels, config.RETRY_JITTER);
        const now = new Date().toISOString();
        const retried = await this.republishDelayed(entry, headers, when, {
          [H.attempt]: attempt + 1,
          [H.firstFailureAt]: headers[H.firstFailureAt] ?? now,
          [H.lastFailureAt]: now,
          [H.lastError]: reason,
        });
        if (retried) {
          this.emit(entry, { type: 'retried', durationMs: Date.now() - started, code, delayMs: when.ttlMs });
          await this.deps.recorder.recordRetry(message).catch((e: Error) => log.debug({ err: e.message }, 'could not record retry progress'));
        }
      } else {
        const level = errorClass === 'permanent' ? 'permanent failure' : `gave up after ${attempt} attempts`;
        log.error({ err: reason, code, errorClass, stack: code === 'unexpected' ? err.stack : undefined }, `stage failed: ${level}`);
        await this.finishWithFailure(entry, message, { code, reason, errorClass }, attempt);
      }
    }
  }

  /**
   * Runs the handler with the stage's time limit. The consumer stops waiting at the deadline even
   * if the handler ignores its signal, so one stuck file never blocks this process's other messages.
   */
  private async runWithDeadline(entry: InFlight, message: StageMessage, ctx: StageContext): Promise<void> {
    const { timeoutMs } = this.settings;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new StageTimeoutError(this.deps.stage, timeoutMs);
        entry.abort.abort(err);
        reject(err);
      }, timeoutMs);
    });
    let running = true;
    // Called inside an async function so that a handler throwing synchronously still settles
    // `work` (and the deadline timer is cleared) instead of escaping with the timer armed.
    const work = (async () => this.deps.handler(message, ctx))().finally(() => {
      running = false;
    });
    work.catch(() => {}); // if the deadline wins, a later rejection of the abandoned handler is expected
    try {
      await Promise.race([work, deadline]);
    } finally {
      clearTimeout(timer);
      if (running) this.trackAbandoned(work, ctx.log);
    }
  }

  private trackAbandoned(work: Promise<void>, log: Logger): void {
    this.abandoned++;
    const limit = abandonedLimit(this.settings.prefetch);
    log.warn({ abandoned: this.abandoned, limit }, 'handler ignored its deadline and still runs; its message is settled without it');
    void work.catch(() => {}).finally(() => this.abandoned--);
  }

  /** How many times this message was delivered before without an outcome (its worker died). */
  private async previousDeliveries(msg: ConsumeMessage, headers: Record<string, unknown>): Promise<number> {
    const count = headers['x-delivery-count'];
    if (typeof count === 'number') return count; // quorum queues count returns for us
    const messageId = messageIdOf(msg);
    if (!msg.fields.redelivered || !messageId) return 0;
    const key = `${this.deps.config.REDIS_KEY_PREFIX}redeliveries:${messageId}`;
    const n = await this.deps.redis.incr(key);
    await this.deps.redis.expire(key, 24 * 3600);
    return n;
  }

  /** Through a delay queue back to this stage; acked once the broker confirmed. False when it went back to the queue instead. */
  private async republishDelayed(entry: InFlight, headers: Record<string, unknown>, when: ScheduledDelay, set: Record<string, unknown>): Promise<boolean> {
    const { broker } = this.deps;
    try {
      // Back through the delay queue to the lane it came from.
      await broker.publishRaw(broker.topology.retryExchange, broker.topology.routingKey(this.deps.stage, entry.lane), entry.msg.content, {
        expiration: String(when.ttlMs),
        messageId: messageIdOf(entry.msg),
        headers: { ...stripBrokerHeaders(headers), [RETRY_LEVEL_HEADER]: when.level.label, ...set },
      });
      this.settle(entry, 'ack');
      return true;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not schedule retry; returning message to the queue');
      this.settle(entry, 'requeue');
      return false;
    }
  }

  private async finishWithFailure(
    entry: InFlight,
    message: StageMessage | null,
    f: { code: string; reason: string; errorClass: ErrorClass },
    attempt: number,
  ): Promise<void> {
    const { broker, recorder } = this.deps;
    const headers = (entry.msg.properties.headers ?? {}) as Record<string, unknown>;
    const now = new Date().toISOString();
    const reason = truncate(f.reason);
    try {
      const recorded = message ? await recorder.recordFailure(message, { stage: this.deps.stage, errorClass: f.errorClass, code: f.code, reason, attempts: attempt }) : 'missing';
      if (recorded === 'moot') {
        this.log.info({ photoId: message?.photoId, code: f.code }, 'failure after the stage had already succeeded (duplicate delivery): dropped');
        this.settle(entry, 'ack');
        this.emit(entry, { type: 'moot', durationMs: Date.now() - entry.started, code: f.code });
        return;
      }
      await broker.publishRaw(broker.topology.deadLetterExchange, this.deps.stage, entry.msg.content, {
        contentType: contentTypeOf(entry.msg) ?? 'application/json',
        headers: {
          ...stripBrokerHeaders(headers),
          [H.stage]: this.deps.stage,
          [H.errorClass]: f.errorClass,
          [H.errorCode]: f.code,
          [H.reason]: reason,
          [H.attempts]: attempt,
          [H.firstFailureAt]: headers[H.firstFailureAt] ?? now,
          [H.lastFailureAt]: now,
          [H.originalRoutingKey]: broker.topology.routingKey(this.deps.stage, entry.lane),
          [H.deadLetteredAt]: now,
          'x-photo-id': message?.photoId,
          'x-tenant-id': message?.tenantId,
        },
      });
      this.settle(entry, 'ack');
      this.emit(entry, { type: 'dead_lettered', durationMs: Date.now() - entry.started, code: f.code, errorClass: f.errorClass });
    } catch (err) {
      // Neither the failure nor the dead letter may be lost: give the message back and try again.
      this.log.warn({ err: (err as Error).message }, 'could not record failure; returning message to the queue');
      await sleep(1_000);
      this.settle(entry, 'requeue');
    }
  }

  private settle(entry: InFlight, outcome: 'ack' | 'requeue'): void {
    if (entry.settled) return;
    entry.settled = true;
    try {
      if (outcome === 'ack') entry.ch.ack(entry.msg);
      else entry.ch.nack(entry.msg, false, true);
    } catch (err) {
      // The delivering channel is gone (broker restart); the broker redelivers the message itself.
      this.log.debug({ err: (err as Error).message }, 'could not settle message on a closed channel');
    }
  }
}

/** Broker-managed headers must not be copied onto a republished message. */
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

/** Reasons go into photos.error (jsonb) and DLQ headers, and may quote file-derived text: made storable there. */
function truncate(s: string): string {
  return dbText(s, MAX_REASON, '…');
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
