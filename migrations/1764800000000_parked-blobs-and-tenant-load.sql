-- Up Migration

-- A failed photo's bytes leave Redis for S3 (parked) until it is replayed or its retention ends.
ALTER TABLE photos ADD COLUMN blobs_parked_at timestamptz;   -- parked in S3, not yet removed
ALTER TABLE photos ADD COLUMN blobs_dropped_at timestamptz;  -- removed after the retention: no replay possible
CREATE INDEX photos_parked ON photos (blobs_parked_at) WHERE blobs_parked_at IS NOT NULL;
-- Failed photos whose bytes are still in Redis (parking failed, e.g. S3 away): the reconciler parks them.
CREATE INDEX photos_failed_unparked ON photos (updated_at) WHERE status = 'failed' AND blobs_parked_at IS NULL AND blobs_dropped_at IS NULL;

-- Per-tenant load: photos a tenant has in flight (admission limits, the bulk lane).
CREATE INDEX photos_tenant_in_flight ON photos (tenant_id) WHERE status IN ('queued', 'processing');
-- The lane a photo's messages travel in (interactive or bulk): the reconciler republishes into it.
ALTER TABLE photos ADD COLUMN lane text NOT NULL DEFAULT 'interactive' CHECK (lane IN ('interactive', 'bulk'));

-- Down Migration
ALTER TABLE photos DROP COLUMN lane;
DROP INDEX photos_tenant_in_flight;
DROP INDEX photos_failed_unparked;
DROP INDEX photos_parked;
ALTER TABLE photos DROP COLUMN blobs_dropped_at;
ALTER TABLE photos DROP COLUMN blobs_parked_at;
