import type { Redis } from 'ioredis';
import { STAGES, type StageName } from './photo-pipeline.js';

/**
 * Pausing a stage fleet-wide: a stage's paused flag lives in Redis (so a worker that starts, or
 * restarts, while it is paused stays paused), and a pub/sub message tells running workers at once;
 * workers also re-read the flags every few seconds, in case they missed a message while
 * reconnecting. A paused stage's consumers are cancelled: its messages wait ready in the queue,
 * with zero consumers, as the management UI shows.
 */
export class StageControl {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  get channel(): string {
    return `${this.prefix}control:stages`;
  }

  private key(stage: StageName): string {
    return `${this.prefix}paused:${stage}`;
  }

  async pause(stage: StageName, by: string): Promise<void> {
    await this.redis.set(this.key(stage), JSON.stringify({ by, at: new Date().toISOString() }));
    await this.redis.publish(this.channel, JSON.stringify({ stage, paused: true }));
  }

  async resume(stage: StageName): Promise<void> {
    await this.redis.del(this.key(stage));
    await this.redis.publish(this.channel, JSON.stringify({ stage, paused: false }));
  }

  /** Every stage's paused flag (with who paused it and when). */
  async states(): Promise<Record<StageName, { paused: boolean; by?: string; at?: string }>> {
    const values = await this.redis.mget(...STAGES.map((s) => this.key(s)));
    const out = {} as Record<StageName, { paused: boolean; by?: string; at?: string }>;
    STAGES.forEach((s, i) => {
      const v = values[i];
      out[s] = v ? { paused: true, ...(JSON.parse(v) as { by?: string; at?: string }) } : { paused: false };
    });
    return out;
  }

  /**
   * Calls onChange(stage, paused) now for every stage's flag, then on every change: at once through
   * pub/sub on a connection of its own, and by re-reading every pollMs. Returns a stop function.
   */
  async watch(subscriber: Redis, stages: readonly StageName[], onChange: (stage: StageName, paused: boolean) => void, pollMs = 5_000): Promise<() => Promise<void>> {
    const known = new Map<StageName, boolean>();
    const apply = (stage: StageName, paused: boolean) => {
      if (!stages.includes(stage) || known.get(stage) === paused) return;
      known.set(stage, paused);
      onChange(stage, paused);
    };
    const refresh = async () => {
      const states = await this.states();
      for (const s of stages) apply(s, states[s].paused);
    };
    await refresh().catch(() => {});
    subscriber.on('message', (channel: string, text: string) => {
      if (channel !== this.channel) return;
      try {
        const m = JSON.parse(text) as { stage: StageName; paused: boolean };
        if ((STAGES as readonly string[]).includes(m.stage)) apply(m.stage, m.paused === true);
      } catch {
        // not ours
      }
    });
    // ioredis subscribes again by itself after a reconnect; the poll covers messages missed meanwhile.
    const subscribe = () => subscriber.subscribe(this.channel).catch(() => {});
    if (subscriber.status === 'ready') await subscribe();
    else subscriber.once('ready', () => void subscribe());
    const timer = setInterval(() => void refresh().catch(() => {}), pollMs);
    timer.unref();
    return async () => {
      clearInterval(timer);
      await subscriber.quit().catch(() => subscriber.disconnect());
    };
  }
}
