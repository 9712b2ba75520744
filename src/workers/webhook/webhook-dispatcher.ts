import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { Config } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import { coerceError } from '../../shared/errors.js';
import type { Broker, ConsumerHandle } from '../../queues/broker.js';
import { photoFinalEventSchema, webhookWorkSchema, type PhotoFinalEvent, type WebhookWork } from '../../queues/messages.js';
import { RETRY_LEVEL_HEADER } from '../../queues/topology.js';
import type { PhotoRepos } from '../../db/photos/index.js';
import type { WebhookRepo } from '../../db/webhook-repo.js';
import type { WebhookDeliveryRepo } from '../../db/webhook-delivery-repo.js';
import { statusUrlFor } from '../../api/photo-view.js';
import { eventIdOf, photoEventBody } from '../../webhooks/photo-event.js';
import { nextAttemptAt, nextHop } from '../../webhooks/delivery-schedule.js';
import { webhookPolicy } from '../../webhooks/webhook-url.js';
import { sendEvent, type SendRequest, type SendOutcome } from './webhook-sender.js';

/** The routing key of the role's own work on the work exchange (SERVICE_QUEUES in topology.ts). */
export const WEBHOOK_WORK_KEY = 'webhook';

/** A receiver at its limit: its delivery waits this long in a delay queue (no attempt spent, no slot held). */
const BUSY_WAIT_MS = 1_000;
/** Postgres away or another dependency failing: the work is tried again after this long. */
const TRY_AGAIN_MS = 5_000;
/** An attempt's lease outlasts its timeout by this much, so a slow answer is never attempted twice at once. */
const LEASE_MARGIN_MS = 10_000;

export interface WebhookDispatcherDeps {
  config: Pick<
    Config,
    'WEBHOOK_RETRY_DELAYS_MS' | 'WEBHOOK_TIMEOUT_MS' | 'WEBHOOK_CONCURRENCY' | 'WEBHOOK_MAX_IN_FLIGHT_PER_RECEIVER' | 'RETRY_JITTER' | 'FETCH_ALLOW_LOOPBACK' | 'PUBLIC_BASE_URL'
  >;
  broker: Broker;
  log: Logger;
  photos: Pick<PhotoRepos, 'reads' | 'variants'>;
  webhooks: WebhookRepo;
  deliveries: WebhookDeliveryRepo;
  /** One attempt (tests may wrap it). */
  send?: (req: SendRequest, opts: Parameters<typeof sendEvent>[1]) => Promise<SendOutcome>;
}

interface InFlight {
  msg: ConsumeMessage;
  ch: ConfirmChannel;
  settled: boolean;
  abort: AbortController;
}

type Work = { kind: 'event'; event: PhotoFinalEvent } | { kind: 'delivery'; deliveryId: string };

/** Who an attempt goes to: concurrency is bounded per tenant and receiving origin. */
function receiverKey(tenantId: string, url: string): string {
  let origin = url;
  try {
    origin = new URL(url).origin;
  } catch {
    // keep the text: the attempt itself will fail on it
  }
  return `${tenantId}\u0000${origin}`;
}

/**
 * The webhook role: turns photo.final events into signed deliveries and attempts them, at least
 * once per event, retrying with backoff for about a day. Nothing here can slow the pipeline, which
 * only publishes events; and a slow or dead receiver delays only its own events:
 *  - every attempt has a time limit (WEBHOOK_TIMEOUT_MS);
 *  - at most WEBHOOK_MAX_IN_FLIGHT_PER_RECEIVER attempts per receiver (tenant and origin), and
 *    twice that per tenant, run at once in a process; a delivery for a receiver or tenant at its
 *    limit waits in a delay queue instead of holding a slot, so the other slots of
 *    WEBHOOK_CONCURRENCY stay free for everyone else;
 *  - a retry waits in the shared delay queues (hops of at most the longest level), holding nothing.
 * A delivery row (one per event and tenant) records every attempt; a lease in Postgres keeps two
 * copies of a message from attempting it at once. A message is acked only once what follows it is
 * durable (the outcome recorded, the next hop published).
 */
export class WebhookDispatcher {
  private readonly inFlight = new Set<InFlight>();
  /** Attempts running in this process, per receiver (tenant and origin) and per tenant. */
  private readonly running = new Map<string, number>();
  private handle: ConsumerHandle | null = null;
  private stopping = false;
  private readonly log: Logger;
  private readonly send: NonNullable<WebhookDispatcherDeps['send']>;
  private readonly statusUrl: (id: string) => string;

  constructor(private readonly deps: WebhookDispatcherDeps) {
    this.log = deps.log.child({ role: 'webhook' });
    this.send = deps.send ?? sendEvent;
    this.statusUrl = statusUrlFor(deps.config.PUBLIC_BASE_URL);
  }

  start(): void {
    const { broker } = this.deps;
    this.handle = broker.consume(broker.topology.serviceQueue('webhook'), this.deps.config.WEBHOOK_CONCURRENCY, (msg, ch) => {
      const entry: InFlight = { msg, ch, settled: false, abort: new AbortController() };
      if (this.stopping) return this.settle(entry, 'requeue');
      this.inFlight.add(entry);
      void this.process(entry).finally(() => this.inFlight.delete(entry));
    });
  }

  /** No new messages; running attempts get graceMs, then they are aborted and handed back. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    await this.handle?.cancel();
    const deadline = Date.now() + graceMs;
    while (this.inFlight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (this.inFlight.size > 0) this.log.warn({ count: this.inFlight.size, graceMs }, 'grace period over: handing unfinished deliveries back to the broker');
    for (const entry of this.inFlight) {
      entry.abort.abort(new Error('shutting down'));
      this.settle(entry, 'requeue');
    }
  }

  private async process(entry: InFlight): Promise<void> {
    const work = parseWork(entry.msg.content);
    if (!work) {
      // Nobody can act on it: it is not ours (a future event type) or broken.
      this.log.warn({ routingKey: entry.msg.fields.routingKey }, 'unreadable webhook message dropped');
      this.settle(entry, 'ack');
      return;
    }
    try {
      const deliveryId = work.kind === 'event' ? await this.deliveryFor(work.event) : work.deliveryId;
      if (deliveryId) await this.attempt(deliveryId, entry.abort.signal);
      this.settle(entry, 'ack');
    } catch (raw) {
      if (entry.settled) return; // handed back at shutdown: its redelivery decides
      const err = coerceError(raw);
      this.log.warn({ err: err.message, ...(work.kind === 'event' ? { photoId: work.event.photoId } : { deliveryId: work.deliveryId }) }, 'webhook work failed; trying again shortly');
      const later: WebhookWork = work.kind === 'event' ? { v: 1, type: 'webhook.event', event: work.event } : { v: 1, type: 'webhook.delivery', deliveryId: work.deliveryId };
      try {
        await this.publishDelayed(later, TRY_AGAIN_MS);
        this.settle(entry, 'ack');
      } catch {
        // The broker is away too: hand the message back (after a pause, so it does not spin).
        await new Promise((r) => setTimeout(r, 1_000));
        this.settle(entry, 'requeue');
      }
    }
  }

  /** The event's delivery (created now or by an earlier copy of the event); null when it goes nowhere. */
  private async deliveryFor(event: PhotoFinalEvent): Promise<string | null> {
    const { webhooks, photos, deliveries } = this.deps;
    // Without a registration there is no secret to sign with: a tenant that never registered (or
    // deleted its webhook) gets nothing, notifyUrl included (an upload naming one is refused then).
    const hook = await webhooks.get(event.tenantId);
    if (!hook) return null;
    const photo = await photos.reads.getForTenant(event.tenantId, event.photoId);
    if (!photo) return null;
    const [notifyUrl, variants] = await Promise.all([photos.reads.notifyUrl(event.tenantId, event.photoId), photos.variants.forPhoto(event.photoId)]);
    const body = photoEventBody(event, photo, variants, this.statusUrl(photo.id));
    const { delivery, created } = await deliveries.createOrGet({
      tenantId: event.tenantId,
      eventId: eventIdOf(event),
      eventType: body.type,
      photoId: event.photoId,
      photoStatus: event.status,
      target: notifyUrl ? 'notify_url' : 'webhook',
      url: notifyUrl ?? hook.url,
      payload: JSON.stringify(body),
    });
    if (!created) this.log.debug({ deliveryId: delivery.id, eventId: delivery.eventId }, 'repeated event: its delivery exists');
    return delivery.id;
  }

  /** Attempts the delivery if it is due and its receiver has room; otherwise it waits in a delay queue. */
  private async attempt(id: string, signal: AbortSignal): Promise<void> {
    const { deliveries, webhooks, config } = this.deps;
    const d = await deliveries.get(id);
    if (!d || d.state !== 'pending') return;
    if (d.waitMs > 0) return this.publishDelayed({ v: 1, type: 'webhook.delivery', deliveryId: id }, d.waitMs);
    const hook = await webhooks.get(d.tenantId);
    if (!hook) {
      await deliveries.cancel(id, 'the webhook was deleted');
      this.log.info({ deliveryId: id, tenantId: d.tenantId }, 'webhook delivery cancelled: no webhook registered any more');
      return;
    }
    // The tenant's webhook goes to its current URL (it may have moved since); a notifyUrl stays.
    const url = d.target === 'webhook' ? hook.url : d.url;
    // Bounded per receiver, and per tenant across the receivers it names (notifyUrls on many origins).
    const keys = [receiverKey(d.tenantId, url), `${d.tenantId}\u0000*`];
    const limits = [config.WEBHOOK_MAX_IN_FLIGHT_PER_RECEIVER, 2 * config.WEBHOOK_MAX_IN_FLIGHT_PER_RECEIVER];
    if (keys.some((k, i) => (this.running.get(k) ?? 0) >= (limits[i] ?? 0))) {
      return this.publishDelayed({ v: 1, type: 'webhook.delivery', deliveryId: id }, BUSY_WAIT_MS);
    }
    for (const k of keys) this.running.set(k, (this.running.get(k) ?? 0) + 1);
    try {
      const claimed = await deliveries.claim(id, config.WEBHOOK_TIMEOUT_MS + LEASE_MARGIN_MS);
      if (!claimed) {
        // Taken by another copy of this message meanwhile, or no longer due: look again when it may be.
        const again = await deliveries.get(id);
        if (again?.state === 'pending') await this.publishDelayed({ v: 1, type: 'webhook.delivery', deliveryId: id }, Math.max(1, again.waitMs));
        return;
      }
      const log = this.log.child({ deliveryId: id, eventId: claimed.eventId, tenantId: claimed.tenantId, photoId: claimed.photoId, attempt: claimed.attempts });
      const outcome = await this.send(
        { url, body: claimed.payload, secret: hook.secret, eventId: claimed.eventId, eventType: claimed.eventType, attempt: claimed.attempts },
        { policy: webhookPolicy(config), timeoutMs: config.WEBHOOK_TIMEOUT_MS, signal },
      );
      if (outcome.ok) {
        await deliveries.delivered(id, outcome.statusCode, url);
        log.info({ statusCode: outcome.statusCode, ms: outcome.ms }, 'webhook delivered');
        return;
      }
      const retryAt = outcome.retry ? nextAttemptAt(claimed.attempts, config.WEBHOOK_RETRY_DELAYS_MS, config.RETRY_JITTER) : null;
      await deliveries.attemptFailed(id, { statusCode: outcome.statusCode, error: outcome.error, url, retryAt });
      if (retryAt) {
        log.info({ err: outcome.error, statusCode: outcome.statusCode, ms: outcome.ms, retryAt: retryAt.toISOString() }, 'webhook attempt failed; retry scheduled');
        await this.publishDelayed({ v: 1, type: 'webhook.delivery', deliveryId: id }, retryAt.getTime() - Date.now());
      } else {
        log.warn({ err: outcome.error, statusCode: outcome.statusCode, attempts: claimed.attempts }, 'webhook delivery given up');
      }
    } finally {
      for (const k of keys) {
        const n = (this.running.get(k) ?? 1) - 1;
        if (n > 0) this.running.set(k, n);
        else this.running.delete(k);
      }
    }
  }

  /** Through the shared delay queues back to this role's queue, after about waitMs (several hops for long waits). */
  private async publishDelayed(work: WebhookWork, waitMs: number): Promise<void> {
    const { broker } = this.deps;
    const hop = nextHop(waitMs, broker.topology.retryLevels);
    await broker.publishRaw(broker.topology.retryExchange, WEBHOOK_WORK_KEY, Buffer.from(JSON.stringify(work)), {
      expiration: String(hop.ttlMs),
      headers: { [RETRY_LEVEL_HEADER]: hop.level.label },
    });
  }

  private settle(entry: InFlight, outcome: 'ack' | 'requeue'): void {
    if (entry.settled) return;
    entry.settled = true;
    try {
      if (outcome === 'ack') entry.ch.ack(entry.msg);
      else entry.ch.nack(entry.msg, false, true);
    } catch (err) {
      // The delivering channel is gone (broker restart): the broker redelivers the message itself.
      this.log.debug({ err: (err as Error).message }, 'could not settle webhook message on a closed channel');
    }
  }
}

/** A photo.final event (from the events exchange) or the role's own work (routing key `webhook`). */
export function parseWork(content: Buffer): Work | null {
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch {
    return null;
  }
  const event = photoFinalEventSchema.safeParse(json);
  if (event.success) return { kind: 'event', event: event.data };
  const work = webhookWorkSchema.safeParse(json);
  if (!work.success) return null;
  return work.data.type === 'webhook.event' ? { kind: 'event', event: work.data.event } : { kind: 'delivery', deliveryId: work.data.deliveryId };
}
