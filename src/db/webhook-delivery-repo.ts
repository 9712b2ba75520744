import { randomUUID } from 'node:crypto';
import type { Db } from '../shared/db.js';
import { dbText, truncateText } from '../shared/text.js';

export type DeliveryState = 'pending' | 'delivered' | 'failed' | 'cancelled';
export const DELIVERY_STATES = ['pending', 'delivered', 'failed', 'cancelled'] as const satisfies readonly DeliveryState[];
/** Where an event goes: the tenant's webhook, or the URL its upload named (notifyUrl). */
export type DeliveryTarget = 'webhook' | 'notify_url';

export interface Delivery {
  id: string;
  tenantId: string;
  eventId: string;
  eventType: string;
  photoId: string;
  photoStatus: string;
  target: DeliveryTarget;
  url: string;
  payload: string;
  state: DeliveryState;
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  nextAttemptAt: Date | null;
  leaseUntil: Date | null;
  createdAt: Date;
  updatedAt: Date;
  deliveredAt: Date | null;
}

/** A delivery as read before an attempt, with how long until it may be attempted (by the database's clock). */
export interface DueDelivery extends Delivery {
  /** Until next_attempt_at or the end of another attempt's lease, whichever is later; 0 when due now. */
  waitMs: number;
}

interface DeliveryDbRow {
  id: string;
  tenant_id: string;
  event_id: string;
  event_type: string;
  photo_id: string;
  photo_status: string;
  target: DeliveryTarget;
  url: string;
  payload: string;
  state: DeliveryState;
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  next_attempt_at: Date | null;
  lease_until: Date | null;
  created_at: Date;
  updated_at: Date;
  delivered_at: Date | null;
}

const COLUMNS =
  'id, tenant_id, event_id, event_type, photo_id, photo_status, target, url, payload, state, attempts, last_status_code, last_error, next_attempt_at, lease_until, created_at, updated_at, delivered_at';

function toDelivery(r: DeliveryDbRow): Delivery {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    eventId: r.event_id,
    eventType: r.event_type,
    photoId: r.photo_id,
    photoStatus: r.photo_status,
    target: r.target,
    url: r.url,
    payload: r.payload,
    state: r.state,
    attempts: r.attempts,
    lastStatusCode: r.last_status_code,
    lastError: r.last_error,
    nextAttemptAt: r.next_attempt_at,
    leaseUntil: r.lease_until,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    deliveredAt: r.delivered_at,
  };
}

/** Errors kept per delivery are short texts for the tenant (our own wording: status, timeout, refusal). */
const MAX_ERROR_CHARS = 500;

export interface NewDelivery {
  tenantId: string;
  eventId: string;
  eventType: string;
  photoId: string;
  photoStatus: string;
  target: DeliveryTarget;
  url: string;
  payload: string;
}

/**
 * Webhook deliveries: one row per event and tenant, whatever the number of times the event was
 * published or the number of webhook processes. A process works on a delivery only while it holds
 * its lease (claim), so two processes never send the same attempt.
 */
export class WebhookDeliveryRepo {
  constructor(private readonly db: Db) {}

  /** The delivery of this event, created now or found from an earlier copy of the event. */
  async createOrGet(d: NewDelivery): Promise<{ delivery: Delivery; created: boolean }> {
    const { rows } = await this.db.query<DeliveryDbRow>(
      `INSERT INTO webhook_deliveries (id, tenant_id, event_id, event_type, photo_id, photo_status, target, url, payload, next_attempt_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
       ON CONFLICT (tenant_id, event_id) DO NOTHING
       RETURNING ${COLUMNS}`,
      [randomUUID(), d.tenantId, d.eventId, d.eventType, d.photoId, d.photoStatus, d.target, dbText(d.url), dbText(d.payload)],
    );
    if (rows[0]) return { delivery: toDelivery(rows[0]), created: true };
    const { rows: existing } = await this.db.query<DeliveryDbRow>(`SELECT ${COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND event_id = $2`, [d.tenantId, d.eventId]);
    if (!existing[0]) throw new Error(`delivery of event ${d.eventId} neither inserted nor found`);
    return { delivery: toDelivery(existing[0]), created: false };
  }

  /** The delivery and how long until it is due, measured in Postgres (the clock claim() goes by). */
  async get(id: string): Promise<DueDelivery | null> {
    const { rows } = await this.db.query<DeliveryDbRow & { wait_ms: number }>(
      `SELECT ${COLUMNS}, GREATEST(0, COALESCE(EXTRACT(EPOCH FROM GREATEST(next_attempt_at, lease_until) - now()) * 1000, 0))::float8 AS wait_ms
       FROM webhook_deliveries WHERE id = $1`,
      [id],
    );
    const r = rows[0];
    return r ? { ...toDelivery(r), waitMs: Math.ceil(r.wait_ms) } : null;
  }

  /**
   * Takes the next attempt of a pending delivery that is due and not leased, for leaseMs: counts the
   * attempt and returns the row; null when another process holds it, it is not due, or it is over.
   */
  async claim(id: string, leaseMs: number): Promise<Delivery | null> {
    const { rows } = await this.db.query<DeliveryDbRow>(
      `UPDATE webhook_deliveries SET attempts = attempts + 1, lease_until = now() + make_interval(secs => $2::double precision / 1000), updated_at = now()
       WHERE id = $1 AND state = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= now())
         AND (lease_until IS NULL OR lease_until <= now())
       RETURNING ${COLUMNS}`,
      [id, leaseMs],
    );
    return rows[0] ? toDelivery(rows[0]) : null;
  }

  /** The receiver answered 2xx. */
  async delivered(id: string, statusCode: number, url: string): Promise<void> {
    await this.db.query(
      `UPDATE webhook_deliveries SET state = 'delivered', last_status_code = $2, last_error = NULL, url = $3, delivered_at = now(),
         next_attempt_at = NULL, lease_until = NULL, updated_at = now()
       WHERE id = $1`,
      [id, statusCode, dbText(url)],
    );
  }

  /** An attempt failed: the next one is due at `retryAt`, or there is none (state failed). */
  async attemptFailed(id: string, f: { statusCode: number | null; error: string; url: string; retryAt: Date | null }): Promise<void> {
    await this.db.query(
      `UPDATE webhook_deliveries SET state = CASE WHEN $5::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,
         last_status_code = $2, last_error = $3, url = $4, next_attempt_at = $5, lease_until = NULL, updated_at = now()
       WHERE id = $1`,
      [id, f.statusCode, dbText(truncateText(f.error, MAX_ERROR_CHARS)), dbText(f.url), f.retryAt],
    );
  }

  /** Nothing to deliver to any more (the webhook was deleted): no further attempts. */
  async cancel(id: string, reason: string): Promise<void> {
    await this.db.query(
      `UPDATE webhook_deliveries SET state = 'cancelled', last_error = $2, next_attempt_at = NULL, lease_until = NULL, updated_at = now()
       WHERE id = $1 AND state = 'pending'`,
      [id, dbText(truncateText(reason, MAX_ERROR_CHARS))],
    );
  }

  /** The tenant's latest deliveries, newest first. */
  async latest(tenantId: string, opts: { limit: number; state?: DeliveryState }): Promise<Delivery[]> {
    const { rows } = await this.db.query<DeliveryDbRow>(
      `SELECT ${COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND ($2::text IS NULL OR state = $2)
       ORDER BY created_at DESC, id DESC LIMIT $3`,
      [tenantId, opts.state ?? null, opts.limit],
    );
    return rows.map(toDelivery);
  }
}
