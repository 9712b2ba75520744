import type { Broker } from '../queues/broker.js';
import { BATCH_DISPATCH, type DispatchMessage } from '../queues/batch-messages.js';
import { deferralDelay } from '../queues/retry-schedule.js';
import { RETRY_LEVEL_HEADER } from '../queues/topology.js';
import type { Logger } from '../shared/logger.js';

/**
 * Wakes the dispatcher for a customer: a message on the batch.dispatch queue. Wake-ups from one
 * process are coalesced per customer (at most one per `coalesceMs`), since each pass looks at
 * everything of the customer anyway. A lost wake-up costs latency only: every dispatcher sweeps
 * the customers with running batches every BATCH_SWEEP_INTERVAL_MS.
 */
export class DispatchKicker {
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly broker: Broker,
    private readonly log: Logger,
    private readonly coalesceMs = 250,
  ) {}

  kick(tenantId: string): void {
    if (this.stopped || this.pending.has(tenantId)) return;
    const t = setTimeout(() => {
      this.pending.delete(tenantId);
      this.now(tenantId).catch((err: Error) => this.log.debug({ tenantId, err: err.message }, 'could not wake the dispatcher (the sweep will)'));
    }, this.coalesceMs);
    t.unref();
    this.pending.set(tenantId, t);
  }

  async now(tenantId: string): Promise<void> {
    const msg: DispatchMessage = { v: 1, tenantId };
    await this.broker.publishRaw(this.broker.topology.workExchange, BATCH_DISPATCH, Buffer.from(JSON.stringify(msg)));
  }

  /** A wake-up in about `delayMs` (the next poll, the next try of a start), through the delay queues. */
  async later(tenantId: string, delayMs: number): Promise<void> {
    const msg: DispatchMessage = { v: 1, tenantId };
    const when = deferralDelay(delayMs, this.broker.topology.retryLevels);
    await this.broker.publishRaw(this.broker.topology.retryExchange, BATCH_DISPATCH, Buffer.from(JSON.stringify(msg)), {
      expiration: String(when.ttlMs),
      headers: { [RETRY_LEVEL_HEADER]: when.level.label },
    });
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
  }
}
