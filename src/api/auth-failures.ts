import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';

/** Counts failed authentications per client and says when a client must wait. */
export interface AuthFailureLimiter {
  /** Milliseconds until this client may try an unverified key again; 0 when it may now. */
  blockedForMs(client: string): Promise<number>;
  /** Counts one failure; milliseconds the client is now blocked for (0 = still under the limit). */
  recordFailure(client: string): Promise<number>;
}

/**
 * An AuthFailureLimiter over rate-limiter-flexible: `limit` failures per `windowSeconds`; a client
 * that has used them up gets 429 until its window ends (one window more if it fails beyond them). A limiter that cannot answer (its store is away and
 * has no fallback) lets the request through to the key check: that still works, only uncounted.
 */
export class RateLimitedFailures implements AuthFailureLimiter {
  constructor(
    private readonly limiter: RateLimiterAbstract,
    private readonly log?: Logger,
  ) {}

  async blockedForMs(client: string): Promise<number> {
    try {
      const res = await this.limiter.get(client);
      // At the limit already: the next failure would be over it, so nothing more is looked up.
      return res && res.consumedPoints >= this.limiter.points ? Math.max(res.msBeforeNext, 1) : 0;
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'auth failure limiter unavailable');
      return 0;
    }
  }

  async recordFailure(client: string): Promise<number> {
    try {
      await this.limiter.consume(client);
      return 0;
    } catch (res) {
      // consume() rejects with a RateLimiterRes when the client is over the limit, with an Error when the store failed.
      if (res instanceof RateLimiterRes) return Math.max(res.msBeforeNext, 1);
      this.log?.warn({ err: (res as Error).message }, 'auth failure limiter unavailable');
      return 0;
    }
  }
}

/**
 * Failures are counted in Redis, so every API process shares one count per client. While Redis is
 * away each process counts in memory instead (rate-limiter-flexible's insurance limiter).
 */
export function redisAuthFailureLimiter(config: Config, redis: Redis, log: Logger): AuthFailureLimiter {
  const opts = { points: config.AUTH_FAILURE_LIMIT, duration: config.AUTH_FAILURE_WINDOW_SECONDS, blockDuration: config.AUTH_FAILURE_WINDOW_SECONDS };
  const limiter = new RateLimiterRedis({
    ...opts,
    storeClient: redis,
    keyPrefix: `${config.REDIS_KEY_PREFIX}auth-failures`,
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory({ ...opts, keyPrefix: 'auth-failures' }),
  });
  return new RateLimitedFailures(limiter, log);
}

/** Per-process counting, for tests and tools without Redis. */
export function memoryAuthFailureLimiter(limit: number, windowSeconds: number): AuthFailureLimiter {
  return new RateLimitedFailures(new RateLimiterMemory({ points: limit, duration: windowSeconds, blockDuration: windowSeconds }));
}
