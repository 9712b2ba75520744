import { Redis } from 'ioredis';
import type { Config } from './config.js';
import type { Logger } from './logger.js';

/**
 * A Redis client that fails fast while Redis is down instead of queueing commands forever:
 * the API must answer 503 at once, and a worker must turn the failure into a retry.
 * It reconnects by itself (ioredis' retryStrategy) with a capped backoff.
 */
export function createRedis(config: Config, log: Logger, name: string): Redis {
  const redis = new Redis(config.REDIS_URL, {
    connectionName: name,
    commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: 5_000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    // Capped at 1 s: after a Redis restart every second without a connection is a second in which
    // uploads get 503 and stages burn retry attempts, while a reconnect attempt costs one TCP connect.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 1_000),
  });
  // Without an 'error' listener ioredis logs every failed reconnect attempt itself; route them
  // through our logger at a level that does not flood while Redis restarts.
  let lastLogged = 0;
  redis.on('error', (err: Error) => {
    const now = Date.now();
    if (now - lastLogged > 5_000) {
      lastLogged = now;
      log.warn({ err: err.message, client: name }, 'redis error (reconnecting)');
    }
  });
  return redis;
}

/** Resolves once the client is connected (commands fail fast before that); rejects after timeoutMs. */
export function redisReady(redis: Redis, timeoutMs = 5_000): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new Error(`Redis not reachable within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}
