import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { RetryableError } from './errors.js';

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const EXTEND = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * Runs fn while holding a lock shared by every process on the same Redis (SET NX PX). The lock is
 * extended while fn runs, so a long run keeps it; if its holder dies it expires after ttlMs. Waits
 * up to waitMs for a holder to finish, then fails as retryable ("busy, try again").
 */
export async function withRedisLock<T>(redis: Redis, key: string, opts: { ttlMs: number; waitMs: number }, fn: () => Promise<T>): Promise<T> {
  const owner = randomUUID();
  const deadline = Date.now() + opts.waitMs;
  const acquire = () =>
    redis.set(key, owner, 'PX', opts.ttlMs, 'NX').catch((err: Error) => {
      throw new RetryableError('redis_unavailable', `cannot take the lock ${key}: ${err.message}`, { cause: err });
    });
  while ((await acquire()) !== 'OK') {
    if (Date.now() >= deadline) throw new RetryableError('busy', `another process holds ${key}; try again shortly`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const keepAlive = setInterval(() => {
    redis.eval(EXTEND, 1, key, owner, String(opts.ttlMs)).catch(() => {});
  }, Math.max(100, Math.floor(opts.ttlMs / 3)));
  try {
    return await fn();
  } finally {
    clearInterval(keepAlive);
    await redis.eval(RELEASE, 1, key, owner).catch(() => {});
  }
}
