-- Up Migration

CREATE TABLE api_keys (
  id          uuid PRIMARY KEY,
  tenant_id   text NOT NULL,
  key_hash    bytea NOT NULL UNIQUE,          -- SHA-256 of the key; the key itself is shown once
  key_prefix  text NOT NULL,                  -- first characters, to tell keys apart in listings
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE photos (
  id             uuid PRIMARY KEY,
  tenant_id      text NOT NULL,
  status         text NOT NULL CHECK (status IN ('queued', 'processing', 'complete', 'duplicate', 'failed')),
  sha256         text,
  duplicate_of   uuid REFERENCES photos (id),
  original_name  text,
  content_type   text,
  file           jsonb,                        -- {format,width,height,bytes}
  exif           jsonb,                        -- normalised fields
  exif_raw       jsonb,                        -- everything exifr returned
  gps_lat        double precision,
  gps_lon        double precision,
  gps_alt        double precision,
  place          jsonb,
  stages         jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {stage: pending|done|skipped|failed}
  error          jsonb,                        -- {stage, reason, code, attempts}
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  progressed_at  timestamptz NOT NULL DEFAULT now(),  -- last time a stage finished: the reconciler's clock
  completed_at   timestamptz
);

-- Exact duplicates: at most one non-duplicate photo per (tenant, content). Concurrent ingests of the
-- same bytes race on this index, and exactly one wins.
CREATE UNIQUE INDEX photos_tenant_sha256_unique ON photos (tenant_id, sha256) WHERE duplicate_of IS NULL AND sha256 IS NOT NULL;
CREATE INDEX photos_tenant_created ON photos (tenant_id, created_at DESC, id DESC);
CREATE INDEX photos_unfinished ON photos (progressed_at) WHERE status IN ('queued', 'processing');

CREATE TABLE photo_variants (
  photo_id      uuid NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
  kind          text NOT NULL CHECK (kind IN ('original', 'framed', 'thumbnail')),
  s3_key        text NOT NULL,
  url           text,                          -- public URL; null for private objects
  width         integer NOT NULL,
  height        integer NOT NULL,
  bytes         integer NOT NULL,
  content_type  text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (photo_id, kind)
);

CREATE TABLE tenant_frames (
  tenant_id     text PRIMARY KEY,
  png           bytea NOT NULL,
  width         integer NOT NULL,
  height        integer NOT NULL,
  window_left   integer NOT NULL,
  window_top    integer NOT NULL,
  window_width  integer NOT NULL,
  window_height integer NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE tenant_frames;
DROP TABLE photo_variants;
DROP TABLE photos;
DROP TABLE api_keys;
