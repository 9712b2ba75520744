-- Up Migration

-- A photo that failed no longer owns its content: uploading the same bytes again gives a new photo
-- that is processed, instead of a "duplicate" of the failure. Replaying the failed photo after that
-- makes it a duplicate of the new one (PhotoRepo.reopenStage).
DROP INDEX photos_tenant_sha256_unique;
CREATE UNIQUE INDEX photos_tenant_sha256_unique ON photos (tenant_id, sha256)
  WHERE duplicate_of IS NULL AND sha256 IS NOT NULL AND status <> 'failed';

-- Down Migration
DROP INDEX photos_tenant_sha256_unique;
CREATE UNIQUE INDEX photos_tenant_sha256_unique ON photos (tenant_id, sha256) WHERE duplicate_of IS NULL AND sha256 IS NOT NULL;
