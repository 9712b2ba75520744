import pg from 'pg';
import type { Config } from './config.js';
import type { Logger } from './logger.js';

export type Db = pg.Pool;

/**
 * A pg pool with timeouts on connect and on every statement. An idle client that loses its
 * connection (Postgres restart) emits 'error' on the pool; without a listener that would crash
 * the process, so it is logged and the pool replaces the client on next use.
 */
export function createDb(config: Config, log: Logger, applicationName: string): Db {
  const pool = new pg.Pool({
    connectionString: config.DATABASE_URL,
    max: config.DATABASE_POOL_MAX,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: config.DATABASE_STATEMENT_TIMEOUT_MS,
    query_timeout: config.DATABASE_STATEMENT_TIMEOUT_MS + 1_000,
    application_name: applicationName,
  });
  pool.on('error', (err) => log.warn({ err: err.message }, 'idle postgres client failed; it will be replaced'));
  return pool;
}
