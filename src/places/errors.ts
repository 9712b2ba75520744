import { PermanentError, RetryableError } from '../shared/errors.js';

/**
 * The shared call budget is spent, or the service said its quota is: try again in retryInMs.
 * Not a failure of the photo, so it does not extend PipelineError: the stage will turn it into a
 * "deferred" outcome that is retried later without spending one of the photo's attempts.
 */
export class RateLimitedError extends Error {
  override readonly name = 'RateLimitedError';
  readonly code = 'rate_limited';
  constructor(
    readonly retryInMs: number,
    reason: string,
  ) {
    super(reason);
  }
}

/** The service (or Redis, which the shared budget lives in) is down, slow or garbled: retry with backoff. */
// No name override: PipelineError subclasses keep their parent's literal name ('RetryableError',
// 'PermanentError'); code tells them apart in logs.
export class GeocoderUnavailableError extends RetryableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('geocoder_unavailable', message, options);
  }
}

/** The service refused the request itself (a 4xx, an invalid parameter): retrying cannot help. */
export class GeocoderRejectedError extends PermanentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('geocoder_rejected', message, options);
  }
}
