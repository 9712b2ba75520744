-- Run as photopipe_owner after `photopipe migrate` (compose service `postgres-grants`, second
-- container of the Kubernetes Job `photopipe-migrate`). Idempotent.
--
-- The app role gets row access (DML) to every table of photopipe's schema, including tables
-- created before roles.sql set the default privileges, and nothing on the migrations' own
-- bookkeeping (pgmigrations): the app never reads it, and must not be able to rewrite which
-- migrations count as applied.

GRANT USAGE ON SCHEMA public TO photopipe_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO photopipe_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO photopipe_app;

REVOKE ALL ON TABLE pgmigrations FROM photopipe_app;
SELECT 'REVOKE ALL ON SEQUENCE pgmigrations_id_seq FROM photopipe_app'
 WHERE to_regclass('public.pgmigrations_id_seq') IS NOT NULL \gexec
