import pg from 'pg';
import type { Config } from './config.js';
import { PermanentError } from './errors.js';
import type { Logger } from './logger.js';
import { truncateText } from './text.js';

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

/**
 * SQLSTATEs that mean "Postgres refuses this value": class 22, data exception (22P02 invalid text
 * representation, 22P05 untranslatable character, 22021 character not in repertoire, 22001 string
 * too long, 22003 out of range, ...), and class 23 integrity violations a retry cannot cure:
 * 23000, 23001 restrict, 23502 not null, 23503 foreign key, 23514 check. Unique and exclusion
 * violations (23505, 23P01) are left out: callers handle them, and the row they collide with may
 * be gone by the next attempt.
 */
const DATA_REJECTION_SQLSTATE = /^(22[0-9A-Z]{3}|23000|23001|23502|23503|23514)$/;

/**
 * True when Postgres refused a statement for one of its values: the same values fail the same way
 * however often they are sent, so this is permanent, never worth a retry.
 */
export function isDataRejection(err: unknown): err is pg.DatabaseError {
  return err instanceof pg.DatabaseError && typeof err.code === 'string' && DATA_REJECTION_SQLSTATE.test(err.code);
}

/**
 * A data rejection as the permanent failure it is (code `invalid_data`); any other error as it was.
 * The reason has the SQLSTATE, the message and pg's detail (which says what was wrong, e.g. "Unicode
 * low surrogate must follow a high surrogate."), bounded; not pg's `where`, which quotes the data.
 */
export function permanentIfDataRejection(err: Error): Error {
  if (!isDataRejection(err)) return err;
  const detail = err.detail ? ` (${truncateText(err.detail, 200, '…')})` : '';
  return new PermanentError('invalid_data', `the database rejected a value: ${err.code}: ${err.message}${detail}`, { cause: err });
}
