import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import type { StageEvents } from '../queues/stage-events.js';

/**
 * Fleet-wide stage counts without Prometheus: every worker process adds what its consumers did
 * to per-second buckets in Redis (and to running totals), once a second in one pipeline; the
 * dashboard reads them. Counts are the fleet's (every process of every container), and survive a
 * worker restart. Buckets expire after BUCKET_TTL_SECONDS.
 */
const BUCKET_TTL_SECONDS = 3_600;

export type FleetCounts = Record<string, number>;

export interface FleetSecond {
  t: number;
  counts: FleetCounts;
}

const keys = (prefix: string) => ({
  second: (t: number) => `${prefix}stats:s:${t}`,
  totals: `${prefix}stats:totals`,
});

/** Field names: `<stage>|<outcome>` counts, `<stage>|ms` the summed duration of its successes. */
export function fieldOf(stage: string, what: string): string {
  return `${stage}|${what}`;
}

export class FleetStatsWriter {
  private pending = new Map<number, Map<string, number>>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  private readonly k: ReturnType<typeof keys>;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    private readonly log: Logger,
  ) {
    this.k = keys(prefix);
  }

  attach(events: StageEvents): void {
    events.on((e) => {
      const t = Math.floor(Date.now() / 1000);
      this.add(t, fieldOf(e.stage, e.type), 1);
      if (e.type === 'succeeded') this.add(t, fieldOf(e.stage, 'ms'), e.durationMs);
    });
  }

  start(intervalMs = 1_000): void {
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  /** Writes what is pending; what cannot be written (Redis away) is kept for the next flush. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const batch = this.pending;
      this.pending = new Map();
      const pipe = this.redis.multi();
      for (const [t, fields] of batch) {
        for (const [f, n] of fields) {
          pipe.hincrby(this.k.second(t), f, Math.round(n));
          pipe.hincrby(this.k.totals, f, Math.round(n));
        }
        pipe.expire(this.k.second(t), BUCKET_TTL_SECONDS);
      }
      try {
        await pipe.exec();
      } catch (err) {
        for (const [t, fields] of batch) for (const [f, n] of fields) this.add(t, f, n);
        this.log.debug({ err: (err as Error).message }, 'could not write fleet stats; kept for the next flush');
      }
    });
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }

  private add(t: number, field: string, n: number): void {
    let fields = this.pending.get(t);
    if (!fields) this.pending.set(t, (fields = new Map()));
    fields.set(field, (fields.get(field) ?? 0) + n);
  }
}

export class FleetStatsReader {
  private readonly k: ReturnType<typeof keys>;

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.k = keys(prefix);
  }

  /** The buckets of the seconds from `from` to `to` (inclusive), oldest first. */
  async seconds(from: number, to: number): Promise<FleetSecond[]> {
    const pipe = this.redis.pipeline();
    for (let t = from; t <= to; t++) pipe.hgetall(this.k.second(t));
    const results = (await pipe.exec()) ?? [];
    return results.map(([, value], i) => ({ t: from + i, counts: toCounts(value) }));
  }

  async totals(): Promise<FleetCounts> {
    return toCounts(await this.redis.hgetall(this.k.totals));
  }
}

function toCounts(value: unknown): FleetCounts {
  const out: FleetCounts = {};
  if (value && typeof value === 'object') for (const [k, v] of Object.entries(value as Record<string, string>)) out[k] = Number(v);
  return out;
}
