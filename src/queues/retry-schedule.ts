/**
 * Which delay queue a message goes through, and with what TTL. Delay queues are levels of fixed
 * nominal delay: messages in one queue expire in about the same order they arrive (a per-message
 * TTL only expires at the head of a queue, so mixing very different TTLs in one queue would hold
 * short ones behind long ones).
 */

export interface RetryLevel {
  label: string;
  delayMs: number;
  queue: string;
}

export interface ScheduledDelay {
  level: RetryLevel;
  /** The message's TTL in that queue (ms, at least 1). */
  ttlMs: number;
}

/** Retry after a failed attempt: the delay for that attempt (the last one repeats), with ± jitter. */
export function retryDelay(attempt: number, delaysMs: readonly number[], levels: readonly RetryLevel[], jitter: number, random: () => number = Math.random): ScheduledDelay {
  const delayMs = delaysMs[Math.min(Math.max(attempt, 1) - 1, delaysMs.length - 1)] ?? 1_000;
  const level = levels.find((l) => l.delayMs === delayMs) ?? longest(levels);
  const ttlMs = Math.max(1, Math.round(delayMs * (1 + (random() * 2 - 1) * jitter)));
  return { level, ttlMs };
}

/**
 * A deferral ("not before delayMs"): the longest level not longer than the wish (the shortest when
 * the wish is shorter than every level), so the message never waits much longer than asked; a
 * handler that is still not ready defers again. The TTL is the level's delay, not the wish, so the
 * queue's FIFO order holds.
 */
export function deferralDelay(delayMs: number, levels: readonly RetryLevel[]): ScheduledDelay {
  const sorted = [...levels].sort((a, b) => a.delayMs - b.delayMs);
  const first = sorted[0];
  if (!first) throw new Error('no delay queues');
  let level = first;
  for (const l of sorted) if (l.delayMs <= delayMs) level = l;
  return { level, ttlMs: level.delayMs };
}

function longest(levels: readonly RetryLevel[]): RetryLevel {
  const l = [...levels].sort((a, b) => b.delayMs - a.delayMs)[0];
  if (!l) throw new Error('no delay queues');
  return l;
}
