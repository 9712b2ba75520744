-- photopipe's PostgreSQL roles and database, run once by a superuser (or any role with
-- CREATEROLE and CREATEDB) before the first migration. Idempotent: safe to run again, and it
-- resets both passwords to the values given.
--
--   psql "postgres://postgres:…@HOST/postgres" -v ON_ERROR_STOP=1 \
--        -v owner_password="$POSTGRES_OWNER_PASSWORD" -v app_password="$POSTGRES_APP_PASSWORD" \
--        -f infra/postgres/roles.sql
--
-- Two roles, neither a superuser:
--   photopipe_owner  owns the database and its schema; `photopipe migrate` connects as this role
--                    (compose service `migrate`, Kubernetes Job `photopipe-migrate`).
--   photopipe_app    what the API, the workers and the reconciler connect as: it may connect and
--                    read/write rows (SELECT, INSERT, UPDATE, DELETE) of the tables the owner
--                    creates, nothing else (no DDL, no TRUNCATE, no other database).
-- infra/postgres/grants.sql (run as the owner after each migration) grants the app its rows and
-- takes back what it must not touch (the migrations' own bookkeeping table).

SELECT format('CREATE ROLE photopipe_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L', :'owner_password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'photopipe_owner') \gexec
SELECT format('CREATE ROLE photopipe_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L', :'app_password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'photopipe_app') \gexec

-- Runs every time, so that changing a password in .env and re-running this script applies it.
ALTER ROLE photopipe_owner WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'owner_password';
ALTER ROLE photopipe_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'app_password';

SELECT 'CREATE DATABASE photopipe OWNER photopipe_owner'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'photopipe') \gexec
ALTER DATABASE photopipe OWNER TO photopipe_owner;

-- Nobody but the two roles connects to photopipe's database.
REVOKE ALL ON DATABASE photopipe FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE photopipe TO photopipe_owner, photopipe_app;

\connect photopipe

-- PostgreSQL 15+ already denies CREATE in schema public to PUBLIC; say so for older servers too.
ALTER SCHEMA public OWNER TO photopipe_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO photopipe_app;

-- Tables and sequences the owner creates later (every migration) are readable and writable by
-- the app at once, even before grants.sql runs again.
ALTER DEFAULT PRIVILEGES FOR ROLE photopipe_owner IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO photopipe_app;
ALTER DEFAULT PRIVILEGES FOR ROLE photopipe_owner IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO photopipe_app;
