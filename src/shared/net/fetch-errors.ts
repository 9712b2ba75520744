import { PipelineError, type ErrorClass } from '../errors.js';

/**
 * Why an outbound fetch failed. Callers branch on `code` and `retryable`, never on the message.
 * Messages are for people: they name the URL's host and the reason, never a resolved address,
 * a path, a query string or a low-level error text (those stay in `cause`, for logs only).
 */
export type FetchErrorCode =
  | 'blocked_address'
  | 'bad_scheme'
  | 'invalid_url'
  | 'too_many_redirects'
  | 'too_large'
  | 'timeout'
  | 'connect_failed'
  | 'dns_failed'
  | 'http_status';

export class FetchError extends PipelineError {
  override readonly name = 'FetchError';
  declare readonly code: FetchErrorCode;
  readonly errorClass: ErrorClass;
  /** The URL's host (with port when one was given), when the failure concerns one. */
  readonly host: string | undefined;
  /** The response's status, for 'http_status'. */
  readonly status: number | undefined;
  /** From a Retry-After header on a 429 or 503, when the server sent one. */
  readonly retryAfterMs: number | undefined;

  constructor(
    code: FetchErrorCode,
    message: string,
    readonly retryable: boolean,
    details: { host?: string; status?: number; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.errorClass = retryable ? 'retryable' : 'permanent';
    this.host = details.host;
    this.status = details.status;
    this.retryAfterMs = details.retryAfterMs;
  }
}

/** 408, 425, 429 and 5xx (except 501 and 505, which will not change) may succeed later. */
export function isRetryableStatus(status: number): boolean {
  if (status === 408 || status === 425 || status === 429) return true;
  return status >= 500 && status <= 599 && status !== 501 && status !== 505;
}

export function httpStatusError(host: string, status: number, retryAfter?: string): FetchError {
  return new FetchError('http_status', `${host} answered with HTTP status ${status}`, isRetryableStatus(status), {
    host,
    status,
    retryAfterMs: parseRetryAfter(retryAfter),
  });
}

/** Retry-After is either delay-seconds or an HTTP date. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const DNS_PERMANENT = new Set(['ENOTFOUND', 'ENODATA', 'EAI_NONAME', 'EAI_NODATA', 'EAI_FAIL', 'ENONAME']);

/** A resolver's failure. NXDOMAIN is permanent; SERVFAIL, timeouts and the like are not. */
export function dnsError(host: string, err: unknown): FetchError {
  const code = errorCode(err);
  const permanent = code !== undefined && DNS_PERMANENT.has(code);
  const reason = permanent ? 'no such host' : 'temporary DNS failure';
  return new FetchError('dns_failed', `could not resolve ${host} (${reason})`, !permanent, { host, cause: err });
}

const CONNECT_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ECONNABORTED: 'connection aborted',
  EPIPE: 'connection closed',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EHOSTDOWN: 'host down',
  UND_ERR_SOCKET: 'connection closed',
  UND_ERR_CLOSED: 'connection closed',
  UND_ERR_HEADERS_TIMEOUT: 'no response headers in time',
  UND_ERR_BODY_TIMEOUT: 'response body stalled',
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'response shorter or longer than announced',
  UND_ERR_HEADERS_OVERFLOW: 'response headers too large',
};

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * A transport failure as a FetchError, or undefined when `err` is not one (a bug, a bad
 * argument): the caller rethrows those unchanged. TLS failures are permanent (a certificate does
 * not fix itself between retries); everything else on the wire is retryable.
 */
export function transportError(host: string, err: unknown): FetchError | undefined {
  const code = errorCode(err);
  if (code === undefined) return undefined;
  if (TLS_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) {
    return new FetchError('connect_failed', `could not connect to ${host} (TLS handshake failed)`, false, { host, cause: err });
  }
  const reason = CONNECT_REASONS[code] ?? (code.startsWith('HPE_') ? 'malformed HTTP response' : undefined);
  if (reason === undefined) return undefined;
  return new FetchError('connect_failed', `request to ${host} failed (${reason})`, true, { host, cause: err });
}

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  return typeof err.code === 'string' ? err.code : undefined;
}
