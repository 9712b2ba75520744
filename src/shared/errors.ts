/**
 * Typed errors. The class says what happens next, never the message text:
 *  - PermanentError: retrying cannot help (corrupt image, invalid message) -> dead-letter now.
 *  - RetryableError: the world may be different later (network, timeouts, 5xx) -> retry with backoff.
 * Anything else thrown by a handler is a bug or an unknown failure and is treated as retryable,
 * so it still ends in the dead-letter queue after the stage's max attempts rather than looping.
 */

export type ErrorClass = 'permanent' | 'retryable';

export abstract class PipelineError extends Error {
  abstract readonly errorClass: ErrorClass;
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class PermanentError extends PipelineError {
  override readonly name = 'PermanentError';
  readonly errorClass = 'permanent' as const;
}

export class RetryableError extends PipelineError {
  override readonly name = 'RetryableError';
  readonly errorClass = 'retryable' as const;
}

/** The handler overran its deadline; retryable until the stage's last attempt. */
export class StageTimeoutError extends RetryableError {
  constructor(stage: string, timeoutMs: number) {
    super('timeout', `timeout in ${stage} after ${timeoutMs} ms`);
  }
}

export function coerceError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new Error(typeof err === 'string' ? err : JSON.stringify(err));
}

export function classify(err: unknown): ErrorClass {
  return err instanceof PipelineError ? err.errorClass : 'retryable';
}

/** Errors the HTTP API maps to a status and a JSON body `{"error":{"code","message"}}`. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export class ServiceUnavailableError extends HttpError {
  constructor(message: string, retryAfterSeconds = 5) {
    super(503, 'service_unavailable', message, { 'retry-after': String(retryAfterSeconds) });
  }
}

/**
 * Not a failure: "not now, try again in delayMs" (a rate limit, a quota window). The consumer
 * sends the message through the delay queues without spending an attempt, and never dead-letters
 * it for that reason alone.
 */
export class DeferError extends Error {
  override readonly name = 'DeferError';
  constructor(
    readonly delayMs: number,
    readonly reason: string,
  ) {
    super(`deferred for ${delayMs} ms: ${reason}`);
  }
}

/**
 * A dependency is away or the system is overloaded: try again after retryAfterSeconds. The HTTP
 * API answers 503 with Retry-After; a worker retries with backoff.
 */
export class UnavailableError extends RetryableError {
  constructor(
    code: string,
    message: string,
    readonly retryAfterSeconds = 5,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}
