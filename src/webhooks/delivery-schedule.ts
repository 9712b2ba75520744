import { deferralDelay, type RetryLevel, type ScheduledDelay } from '../queues/retry-schedule.js';

/**
 * When a failed delivery is tried again: after `attemptsMade` attempts, the wait is
 * WEBHOOK_RETRY_DELAYS_MS[attemptsMade - 1] with ± jitter; null once the list is used up (the
 * delivery is given up). The default list spreads 10 attempts over about 23.6 hours, so a receiver
 * that is down for an hour still gets every event (attempts 5 and 6 fall after 36 min and 1 h 36 min).
 */
export function nextAttemptAt(attemptsMade: number, delaysMs: readonly number[], jitter: number, nowMs = Date.now(), random: () => number = Math.random): Date | null {
  const delay = delaysMs[attemptsMade - 1];
  if (delay === undefined || attemptsMade < 1) return null;
  return new Date(nowMs + Math.max(1, Math.round(delay * (1 + (random() * 2 - 1) * jitter))));
}

/** Total wait from the first attempt to the last (without jitter). */
export function retryWindowMs(delaysMs: readonly number[]): number {
  return delaysMs.reduce((a, b) => a + b, 0);
}

/**
 * The next hop of a message waiting `remainingMs` for its delivery's due time, through the shared
 * delay queues: the longest level not longer than what is left (the shortest when less is left),
 * with that level's own TTL so each delay queue stays in FIFO order. A wait longer than the
 * longest level (an 8 h retry with 10 min queues) takes several hops; each hop costs one message
 * and holds no consumer slot.
 */
export function nextHop(remainingMs: number, levels: readonly RetryLevel[]): ScheduledDelay {
  return deferralDelay(Math.max(1, remainingMs), levels);
}
