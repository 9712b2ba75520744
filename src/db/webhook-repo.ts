import type { Db } from '../shared/db.js';

export interface Webhook {
  tenantId: string;
  url: string;
  /** Signs every event (HMAC-SHA256); shown to the tenant once, when it is made. */
  secret: string;
  createdAt: Date;
  updatedAt: Date;
}

interface WebhookDbRow {
  tenant_id: string;
  url: string;
  secret: string;
  created_at: Date;
  updated_at: Date;
  /** Only from put(): whether the row was inserted (true) or replaced. */
  inserted?: boolean;
}

const toWebhook = (r: WebhookDbRow): Webhook => ({ tenantId: r.tenant_id, url: r.url, secret: r.secret, createdAt: r.created_at, updatedAt: r.updated_at });

/** A tenant's webhook registration (at most one per tenant). */
export class WebhookRepo {
  constructor(private readonly db: Db) {}

  /** Registers or replaces the tenant's webhook (URL and secret); `created` says which. */
  async put(tenantId: string, url: string, secret: string): Promise<{ webhook: Webhook; created: boolean }> {
    const { rows } = await this.db.query<WebhookDbRow>(
      `INSERT INTO webhooks (tenant_id, url, secret) VALUES ($1, $2, $3)
       ON CONFLICT (tenant_id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret, updated_at = now()
       RETURNING tenant_id, url, secret, created_at, updated_at, (xmax = 0) AS inserted`,
      [tenantId, url, secret],
    );
    const row = rows[0];
    if (!row) throw new Error('webhook upsert returned no row');
    return { webhook: toWebhook(row), created: row.inserted === true };
  }

  async get(tenantId: string): Promise<Webhook | null> {
    const { rows } = await this.db.query<WebhookDbRow>(`SELECT tenant_id, url, secret, created_at, updated_at FROM webhooks WHERE tenant_id = $1`, [tenantId]);
    return rows[0] ? toWebhook(rows[0]) : null;
  }

  /** False when the tenant had none. */
  async delete(tenantId: string): Promise<boolean> {
    const { rowCount } = await this.db.query(`DELETE FROM webhooks WHERE tenant_id = $1`, [tenantId]);
    return rowCount === 1;
  }
}
