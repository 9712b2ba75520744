import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * Spends one call from a budget of `calls` per `windowMs`, shared by every process on the same
 * Redis: a sliding log (a sorted set of call times), checked and added to in one Lua script, using
 * Redis' clock. Unlike a fixed window, no span of windowMs ever holds more than `calls` calls,
 * wherever a provider's own window starts; a refused call is not counted. Returns 0 when the call
 * may go, else the milliseconds until the oldest call in the window leaves it.
 */
const SPEND = `
local key, window, calls, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < calls then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
`;

export class SlidingWindowBudget {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly calls: number,
    private readonly windowMs: number,
  ) {}

  /** 0: spent, go ahead; n > 0: the budget is spent, try again in n ms. */
  async spend(): Promise<number> {
    return Number(await this.redis.eval(SPEND, 1, this.key, this.windowMs, this.calls, randomUUID()));
  }
}
