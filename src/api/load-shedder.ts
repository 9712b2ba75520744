import type { Redis } from 'ioredis';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { Broker } from '../queues/broker.js';

/**
 * Refuses new uploads (503 + Retry-After) while Redis memory or the ingest backlog is above its
 * configured limit, so a flood grows neither without bound. Readings are refreshed in the
 * background; the request path only reads a flag.
 */
export class LoadShedder {
  private reason: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastReadAt = Date.now();

  constructor(
    private readonly config: Pick<Config, 'SHED_REDIS_MAX_BYTES' | 'SHED_INGEST_QUEUE_MAX' | 'SHED_CHECK_INTERVAL_MS'>,
    private readonly redis: Pick<Redis, 'info'>,
    private readonly broker: Pick<Broker, 'stageDepth'>,
    private readonly log: Logger,
  ) {}

  /** Gauges unread for this long mean the load is unknown: uploads are refused until they read again. */
  get blindAfterMs(): number {
    return Math.max(5 * this.config.SHED_CHECK_INTERVAL_MS, 5_000);
  }

  get enabled(): boolean {
    return this.config.SHED_REDIS_MAX_BYTES > 0 || this.config.SHED_INGEST_QUEUE_MAX > 0;
  }

  /** Why uploads are refused right now, or null. */
  get sheddingReason(): string | null {
    return this.reason;
  }

  start(): void {
    if (!this.enabled) return;
    const tick = () => {
      void this.check().finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.config.SHED_CHECK_INTERVAL_MS);
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  async check(): Promise<void> {
    const reasons: string[] = [];
    try {
      if (this.config.SHED_REDIS_MAX_BYTES > 0) {
        const info = await this.redis.info('memory');
        const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
        if (used > this.config.SHED_REDIS_MAX_BYTES) reasons.push(`redis memory ${used} bytes above ${this.config.SHED_REDIS_MAX_BYTES}`);
      }
      if (this.config.SHED_INGEST_QUEUE_MAX > 0) {
        const depth = await this.broker.stageDepth('ingest');
        if (depth > this.config.SHED_INGEST_QUEUE_MAX) reasons.push(`ingest queue depth ${depth} above ${this.config.SHED_INGEST_QUEUE_MAX}`);
      }
      this.lastReadAt = Date.now();
    } catch (err) {
      // A failed reading keeps the last verdict (shedding stays on while it cannot be checked), and
      // gauges unreadable for longer than blindAfterMs shed by themselves: the load is unknown.
      this.log.debug({ err: (err as Error).message }, 'load check failed');
      if (Date.now() - this.lastReadAt > this.blindAfterMs) reasons.push(`load gauges unreadable for ${Math.round((Date.now() - this.lastReadAt) / 1000)} s`);
      else if (this.reason) reasons.push(this.reason);
    }
    const next = reasons.length > 0 ? reasons.join('; ') : null;
    if ((next === null) !== (this.reason === null)) this.log.warn({ reason: next }, next ? 'shedding uploads' : 'no longer shedding uploads');
    this.reason = next;
  }
}
