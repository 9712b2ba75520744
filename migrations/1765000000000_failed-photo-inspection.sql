-- Up Migration

-- Operators browse failed photos newest first, grouped by stage and error code (dashboard, admin API).
CREATE INDEX photos_failed_recent ON photos (updated_at DESC, id DESC) WHERE status = 'failed';

-- Down Migration
DROP INDEX photos_failed_recent;
