import type { Logger } from '../shared/logger.js';
import type { Broker } from '../queues/broker.js';
import { SharedResult } from '../shared/shared-result.js';

export interface QueueStat {
  name: string;
  ready: number;
  /** Delivered and not yet acked; null when only the AMQP view is available (no management API). */
  unacked: number | null;
  consumers: number;
}

/**
 * Depths and consumers of photopipe's queues, for /metrics and the dashboard. RabbitMQ's
 * management API gives ready, unacked and consumers for all queues in one request; without it
 * (unreachable, or a user without the monitoring tag) each queue is checked over AMQP, which gives
 * ready and consumers only. Read at most every 2 s, shared by concurrent callers.
 */
export class QueueStats {
  private readonly cached: SharedResult<QueueStat[]>;
  private managementWorks: boolean | null = null;

  constructor(
    private readonly broker: Broker,
    private readonly opts: { managementUrl: string | undefined; amqpUrl: string; prefix: string; log: Logger },
  ) {
    this.cached = new SharedResult(() => this.read(), 2_000);
  }

  all(): Promise<QueueStat[]> {
    return this.cached.get();
  }

  private async read(): Promise<QueueStat[]> {
    if (this.managementWorks !== false) {
      try {
        const stats = await this.fromManagement();
        this.managementWorks = true;
        return stats;
      } catch (err) {
        if (this.managementWorks === null) this.opts.log.info({ err: (err as Error).message }, 'RabbitMQ management API unavailable: queue depths without unacked counts');
        this.managementWorks = false;
      }
    }
    const names = this.broker.topology.queues.map((q) => q.name);
    return Promise.all(
      names.map(async (name) => {
        const q = await this.broker.checkQueue(name);
        return { name, ready: q.messageCount, unacked: null, consumers: q.consumerCount };
      }),
    );
  }

  private async fromManagement(): Promise<QueueStat[]> {
    const amqp = new URL(this.opts.amqpUrl);
    const base = new URL(this.opts.managementUrl ?? `http://${amqp.hostname}:15672`);
    const user = decodeURIComponent(base.username || amqp.username || 'guest');
    const pass = decodeURIComponent(base.password || amqp.password || 'guest');
    const vhost = encodeURIComponent(decodeURIComponent(amqp.pathname.replace(/^\//, '')) || '/');
    const url = `${base.origin}/api/queues/${vhost}?columns=name,messages_ready,messages_unacknowledged,consumers`;
    const res = await fetch(url, { headers: { authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` }, signal: AbortSignal.timeout(3_000) });
    if (!res.ok) throw new Error(`management API answered ${res.status}`);
    const rows = (await res.json()) as { name: string; messages_ready?: number; messages_unacknowledged?: number; consumers?: number }[];
    const ours = new Set(this.broker.topology.queues.map((q) => q.name));
    return rows.filter((r) => ours.has(r.name)).map((r) => ({ name: r.name, ready: r.messages_ready ?? 0, unacked: r.messages_unacknowledged ?? 0, consumers: r.consumers ?? 0 }));
  }
}
