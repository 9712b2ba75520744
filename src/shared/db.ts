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

/** SQLSTATE classes and codes that mean "the database is not reachable right now", not "the query is wrong". */
const UNAVAILABLE_SQLSTATE = /^(08|57P01|57P02|57P03|53300)/; // connection exception; admin/crash shutdown; starting up or shutting down; too many connections
const UNAVAILABLE_SOCKET = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
// pg and pg-pool raise these without a code when a connection breaks or cannot be had in time.
const UNAVAILABLE_MESSAGE = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout)/;

/**
 * True when a query failed because Postgres is down, restarting or unreachable: callers answer
 * 503 (or retry) for these, while any other error stays a bug that surfaces as one.
 */
export function isDbUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_SOCKET.has(code))) return true;
  return UNAVAILABLE_MESSAGE.test(err.message);
}
