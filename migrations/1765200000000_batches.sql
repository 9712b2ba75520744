-- Up Migration

-- What a photo is for: 'photo' (an upload: frame, thumbnail, original) or 'batch' (a downloaded
-- image converted to its batch's output). Batch photos carry their output spec, and exact-duplicate
-- detection is per (tenant, content, profile, output): the same bytes in two batches with the same
-- output are converted once, and an upload never counts as the duplicate of a batch image.
ALTER TABLE photos ADD COLUMN profile text NOT NULL DEFAULT 'photo' CHECK (profile IN ('photo', 'batch'));
ALTER TABLE photos ADD COLUMN output jsonb;
DROP INDEX photos_tenant_sha256_unique;
CREATE UNIQUE INDEX photos_tenant_sha256_unique ON photos (tenant_id, sha256, profile, (COALESCE(output, '{}'::jsonb)))
  WHERE duplicate_of IS NULL AND sha256 IS NOT NULL AND status <> 'failed';
-- Batch items follow the owner of their content when their own photo is a duplicate.
CREATE INDEX photos_duplicate_of ON photos (duplicate_of) WHERE duplicate_of IS NOT NULL;

ALTER TABLE photo_variants DROP CONSTRAINT photo_variants_kind_check;
ALTER TABLE photo_variants ADD CONSTRAINT photo_variants_kind_check CHECK (kind IN ('original', 'framed', 'thumbnail', 'converted'));

-- A batch: URLs to download, convert and hand to the customer's batch API in rolling calls.
CREATE TABLE batches (
  id               uuid PRIMARY KEY,
  tenant_id        text NOT NULL,                 -- the customer: one call in flight per tenant
  status           text NOT NULL CHECK (status IN ('running', 'complete', 'complete_with_failures', 'cancelled', 'failed')),
  source           text NOT NULL CHECK (source IN ('urls', 'list')),
  list_url         text,
  output           jsonb NOT NULL,                -- {format, maxSize, quality}
  min_batch_size   integer NOT NULL,
  max_batch_size   integer NOT NULL,
  api_endpoint     text NOT NULL,
  api_mode         text NOT NULL CHECK (api_mode IN ('poll', 'webhook')),
  api_auth_name    text,                          -- header the customer's API wants (e.g. Authorization)
  api_auth_value   text,                          -- its value: sent on every call, never shown
  total            integer NOT NULL,
  idempotency_key  text,
  error            jsonb,                         -- why the batch failed
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz
);
CREATE INDEX batches_tenant_created ON batches (tenant_id, created_at DESC, id DESC);
CREATE INDEX batches_active ON batches (tenant_id) WHERE status = 'running';
CREATE UNIQUE INDEX batches_idempotency ON batches (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- One row per URL, numbered by its line (or array position). Its photo id is chosen when the item is
-- created, so a download redelivered after a crash accepts the same photo again, never a second one.
CREATE TABLE batch_items (
  batch_id       uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
  seq            integer NOT NULL,
  url            text NOT NULL,
  status         text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'queued', 'accepted', 'ready', 'handed', 'failed', 'cancelled')),
  photo_id       uuid NOT NULL DEFAULT gen_random_uuid(),
  output_url     text,
  call_seq       integer,
  error          jsonb,                          -- {code, reason}
  queued_at      timestamptz,
  downloaded_at  timestamptz,
  ready_at       timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (batch_id, seq)
);
CREATE INDEX batch_items_open ON batch_items (batch_id, status, seq) WHERE status IN ('pending', 'queued', 'accepted', 'ready');
CREATE INDEX batch_items_ready ON batch_items (batch_id, ready_at, seq) WHERE status = 'ready';
CREATE INDEX batch_items_failed ON batch_items (batch_id, seq) WHERE status = 'failed';
CREATE INDEX batch_items_call ON batch_items (batch_id, call_seq, seq) WHERE call_seq IS NOT NULL;

-- Calls to the customer's batch API. At most one open (starting or running) call per customer, by
-- this index, whatever the number of dispatchers, their pauses or crashes: a second open call is a
-- unique violation. `fence` grows each time a dispatcher takes the call over; writes that depend on
-- holding it (recording the job, giving up) check it, so a paused dispatcher that wakes up late
-- changes nothing.
CREATE TABLE batch_calls (
  batch_id         uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
  seq              integer NOT NULL,
  tenant_id        text NOT NULL,
  status           text NOT NULL CHECK (status IN ('starting', 'running', 'succeeded', 'failed', 'refused', 'abandoned')),
  size             integer NOT NULL,
  idempotency_key  text NOT NULL,
  callback_token   text,
  fence            bigint NOT NULL DEFAULT 0,
  job_id           text,
  attempts         integer NOT NULL DEFAULT 0,
  error            jsonb,
  started_at       timestamptz NOT NULL DEFAULT now(),
  accepted_at      timestamptz,
  finished_at      timestamptz,
  next_poll_at     timestamptz,
  PRIMARY KEY (batch_id, seq)
);
CREATE UNIQUE INDEX batch_calls_one_open_per_customer ON batch_calls (tenant_id) WHERE status IN ('starting', 'running');

-- Down Migration
DROP TABLE batch_calls;
DROP TABLE batch_items;
DROP TABLE batches;
ALTER TABLE photo_variants DROP CONSTRAINT photo_variants_kind_check;
ALTER TABLE photo_variants ADD CONSTRAINT photo_variants_kind_check CHECK (kind IN ('original', 'framed', 'thumbnail'));
DROP INDEX photos_duplicate_of;
DROP INDEX photos_tenant_sha256_unique;
CREATE UNIQUE INDEX photos_tenant_sha256_unique ON photos (tenant_id, sha256)
  WHERE duplicate_of IS NULL AND sha256 IS NOT NULL AND status <> 'failed';
ALTER TABLE photos DROP COLUMN output;
ALTER TABLE photos DROP COLUMN profile;
