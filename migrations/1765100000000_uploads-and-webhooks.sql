-- Up Migration

-- An upload may name its own webhook URL (notifyUrl): its final event goes there instead of to the
-- tenant's webhook. Checked (scheme, address) when the upload is accepted, and again at delivery.
ALTER TABLE photos ADD COLUMN notify_url text;

-- POST /v1/photos/check and checked uploads find a tenant's content through
-- photos_tenant_sha256_unique (tenant_id, sha256 WHERE the photo owns its content): no new index.

-- A tenant's webhook: where photo.final events go, and the secret they are signed with (HMAC-SHA256;
-- stored as it is, since signing needs it; shown to the tenant once, when it is made).
CREATE TABLE webhooks (
  tenant_id   text PRIMARY KEY,
  url         text NOT NULL,
  secret      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per event and tenant: the unique key makes a repeated photo.final event (it is published
-- at least once) one delivery, whatever the number of webhook processes.
CREATE TABLE webhook_deliveries (
  id                uuid PRIMARY KEY,
  tenant_id         text NOT NULL,
  event_id          text NOT NULL,
  event_type        text NOT NULL,
  photo_id          uuid NOT NULL,
  photo_status      text NOT NULL,
  target            text NOT NULL CHECK (target IN ('webhook', 'notify_url')),
  url               text NOT NULL,
  payload           text NOT NULL,          -- the exact body sent on every attempt (signed per attempt)
  state             text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled')),
  attempts          integer NOT NULL DEFAULT 0,
  last_status_code  integer,
  last_error        text,
  next_attempt_at   timestamptz,            -- pending: when the next attempt is due
  lease_until       timestamptz,            -- an attempt in progress (another process leaves it alone until then)
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  delivered_at      timestamptz,
  UNIQUE (tenant_id, event_id)
);
CREATE INDEX webhook_deliveries_tenant_recent ON webhook_deliveries (tenant_id, created_at DESC, id DESC);

-- Down Migration
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
ALTER TABLE photos DROP COLUMN notify_url;
