import { randomBytes } from 'node:crypto';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { Broker } from '../queues/broker.js';
import { BATCH_DOWNLOAD, type DownloadMessage } from '../queues/batch-messages.js';
import type { BatchRepo, BatchRow, CallRow } from '../db/batches/batch-repo.js';
import type { TenantLoad } from '../pipeline/tenant-load.js';
import type { BatchApiClient, ApiTarget } from './batch-api-client.js';
import { shouldStartCall } from './call-plan.js';
import type { DispatchKicker } from './dispatch-kicker.js';

export interface DispatcherDeps {
  config: Pick<Config, 'BATCH_WINDOW' | 'BATCH_POLL_INTERVAL_MS' | 'BATCH_CALL_MAX_ATTEMPTS' | 'BATCH_REQUEUE_AFTER_MS' | 'PUBLIC_BASE_URL' | 'RETRY_DELAYS_MS'>;
  repo: BatchRepo;
  broker: Broker;
  api: BatchApiClient;
  kicker: DispatchKicker;
  tenantLoad: TenantLoad;
  log: Logger;
}

/** The Idempotency-Key of a call: fixed for the call, so every (re)send of its start names the same job. */
export const idempotencyKeyOf = (batchId: string, seq: number): string => `${batchId}.${seq}`;

export function callbackUrlOf(base: string, batchId: string, seq: number): string {
  return `${base.replace(/\/$/, '')}/v1/batches/${batchId}/callbacks/${seq}`;
}

/**
 * One pass over a customer's batches ("tick"), run by the batch-dispatch role whenever something
 * may have changed for the customer (a photo became final, a download failed, a call's poll is
 * due, a callback arrived, the periodic sweep). A pass looks at the state in Postgres and does
 * whatever is due, so running it twice, or after a crash half-way, is harmless:
 *
 *  1. items whose photo is final become ready (with their public URL) or failed;
 *  2. each running batch releases downloads up to BATCH_WINDOW items in flight (and within the
 *     tenant's in-flight limit): Redis holds at most that many of a batch's images;
 *  3. the customer's open call (at most one, by a unique index) is moved on: its start sent (again,
 *     with the same Idempotency-Key, after a crash) or polled when due; once it is over, the next
 *     call starts with whatever is ready (the first call of a batch waits for minBatchSize);
 *  4. batches with nothing left become complete (or complete_with_failures).
 *
 * Passes for one customer never overlap within a process (the role serialises them); across
 * processes (a failover, a paused process) the database decides: one open call per customer,
 * items moved by guarded updates, call writes fenced.
 */
export class Dispatcher {
  constructor(private readonly d: DispatcherDeps) {}

  async tick(tenantId: string): Promise<void> {
    const { repo } = this.d;
    const batches = await repo.runningBatches(tenantId);
    if (batches.length > 0) {
      await repo.resolveFinished(batches.map((b) => b.id));
      await this.feed(tenantId, batches);
    }
    let open = await repo.openCall(tenantId);
    // A call that closes in this pass lets the next one start in the same pass. A call is moved on
    // at most once per pass: one that stays open (not due, or held by another dispatcher now) waits.
    const seen = new Set<string>();
    for (let guard = 0; guard < 4; guard++) {
      if (open) {
        const key = `${open.batchId}.${open.seq}`;
        if (seen.has(key)) break;
        seen.add(key);
        open = await this.advance(open);
        if (open) break;
      }
      open = await this.startNext(tenantId, seen);
      if (!open) break;
    }
    if (batches.length > 0) {
      for (const f of await repo.finishBatches(tenantId)) this.d.log.info({ tenantId, batchId: f.id, status: f.status }, 'batch finished');
    }
    if (open?.nextPollAt) {
      // Woken again when the call is due (a poll, the next try of its start).
      await this.d.kicker.later(tenantId, Math.max(0, open.nextPollAt.getTime() - Date.now())).catch((err: Error) => this.d.log.warn({ err: err.message }, 'could not schedule the next pass'));
    }
  }

  /** Releases downloads so that each running batch keeps BATCH_WINDOW items in flight, within the tenant's in-flight limit. */
  private async feed(tenantId: string, batches: BatchRow[]): Promise<void> {
    const { repo, config, broker, tenantLoad } = this.d;
    const limit = tenantLoad.limitsOf(tenantId).maxInFlight;
    let room = Number.POSITIVE_INFINITY;
    if (limit > 0) room = Math.max(0, limit - (await tenantLoad.inFlight(tenantId)));
    for (const b of batches) {
      const publish = async (seqs: number[]) => {
        await Promise.all(
          seqs.map((seq) => {
            const msg: DownloadMessage = { v: 1, batchId: b.id, tenantId, seq };
            return broker.publishRaw(broker.topology.workExchange, BATCH_DOWNLOAD, Buffer.from(JSON.stringify(msg)));
          }),
        );
      };
      const window = Math.min(config.BATCH_WINDOW, Number.isFinite(room) ? room : config.BATCH_WINDOW);
      if (window > 0) {
        const released = await repo.release(b.id, window, publish);
        if (Number.isFinite(room)) room -= released;
      }
      const stale = await repo.staleQueued(b.id, config.BATCH_REQUEUE_AFTER_MS, config.BATCH_WINDOW);
      if (stale.length > 0) {
        this.d.log.warn({ batchId: b.id, count: stale.length }, 'released items not downloaded for long: releasing them again');
        await publish(stale);
      }
    }
  }

  /** Starts the customer's next call if a running batch is due one; returns the open call, or null. */
  private async startNext(tenantId: string, seen: Set<string>): Promise<CallRow | null> {
    const { repo } = this.d;
    for (const p of await repo.plans(tenantId)) {
      if (!shouldStartCall({ ready: p.ready, moreToCome: p.moreToCome, callsSoFar: p.calls, minBatchSize: p.minBatchSize })) continue;
      const batch = await repo.batchById(p.id);
      const webhook = batch?.apiMode === 'webhook';
      const call = await repo.openNewCall(tenantId, p.id, p.maxBatchSize, {
        idempotencyKey: (seq) => idempotencyKeyOf(p.id, seq),
        callbackToken: webhook ? randomBytes(32).toString('base64url') : null,
      });
      if (!call) return repo.openCall(tenantId); // another pass opened one meanwhile
      this.d.log.info({ tenantId, batchId: call.batchId, seq: call.seq, size: call.size }, 'batch API call opened');
      seen.add(`${call.batchId}.${call.seq}`);
      return this.advance(call);
    }
    return null;
  }

  /**
   * Moves an open call on when it is due: sends (or re-sends) its start, or polls it. Returns the
   * call while it stays open, null once it is closed. Takes the call's fence first: every write
   * below names it, so a paused dispatcher that lost the call to another one changes nothing.
   */
  private async advance(call: CallRow): Promise<CallRow | null> {
    const { repo, api, config, log } = this.d;
    if (call.nextPollAt && call.nextPollAt.getTime() > Date.now()) return call;
    const batch = await repo.batchById(call.batchId);
    if (!batch) return null;
    if (call.status === 'running' && batch.apiMode === 'webhook') return call; // its callback closes it
    const held = await repo.claim(call.batchId, call.seq);
    if (!held) return null;
    const target: ApiTarget = { endpoint: batch.apiEndpoint, authName: batch.apiAuthName, authValue: batch.apiAuthValue };
    const clog = log.child({ tenantId: call.tenantId, batchId: call.batchId, seq: call.seq, fence: held.fence });

    if (held.status === 'starting') {
      const urls = await repo.callUrls(call.batchId, call.seq);
      const base = config.PUBLIC_BASE_URL;
      const outcome = await api.start(target, held.idempotencyKey, {
        batchId: call.batchId,
        sequence: call.seq,
        urls,
        ...(batch.apiMode === 'webhook' && base && held.callbackToken ? { callbackUrl: callbackUrlOf(base, call.batchId, call.seq), callbackToken: held.callbackToken } : {}),
      });
      if (outcome.kind === 'accepted') {
        const nextPoll = batch.apiMode === 'poll' ? new Date(Date.now() + config.BATCH_POLL_INTERVAL_MS) : null;
        if (!(await repo.markRunning(held, outcome.jobId, nextPoll))) return repo.call(call.batchId, call.seq).then(openOrNull);
        clog.info({ jobId: outcome.jobId, urls: urls.length, attempt: held.attempts + 1 }, 'batch API call started');
        return repo.call(call.batchId, call.seq).then(openOrNull);
      }
      if (outcome.kind === 'refused') {
        clog.warn({ code: outcome.code, reason: outcome.reason }, 'batch API refused the call: the batch fails');
        await repo.giveUp(held, 'refused', { code: 'batch_api_refused', reason: outcome.reason });
        return null;
      }
      if (held.attempts + 1 >= config.BATCH_CALL_MAX_ATTEMPTS) {
        clog.error({ code: outcome.code, reason: outcome.reason, attempts: held.attempts + 1 }, 'batch API did not answer the start: giving up, the batch fails');
        await repo.giveUp(held, 'abandoned', { code: 'batch_api_unavailable', reason: outcome.reason });
        return null;
      }
      const delay = Math.max(outcome.retryAfterMs ?? 0, backoff(held.attempts + 1, config.RETRY_DELAYS_MS));
      clog.warn({ code: outcome.code, reason: outcome.reason, retryInMs: delay }, 'batch API start failed; trying again with the same Idempotency-Key');
      await repo.postpone(held, new Date(Date.now() + delay), { error: { code: outcome.code, reason: outcome.reason } });
      return repo.call(call.batchId, call.seq).then(openOrNull);
    }

    // running, poll mode
    const polled = await api.poll(target, held.jobId ?? '');
    if (polled.kind === 'finished') {
      const closed = await repo.finishCall(call.batchId, call.seq, polled.status, polled.status === 'failed' ? { error: { code: 'batch_job_failed', reason: polled.error ?? 'the batch API reported the job failed' } } : {});
      if (closed) clog.info({ outcome: polled.status, size: held.size, ms: Date.now() - held.startedAt.getTime() }, 'batch API call finished');
      return null;
    }
    if (polled.kind === 'error') clog.warn({ code: polled.code, reason: polled.reason }, 'polling the batch API failed; polling again');
    await repo.postpone(held, new Date(Date.now() + config.BATCH_POLL_INTERVAL_MS), null);
    return repo.call(call.batchId, call.seq).then(openOrNull);
  }
}

function openOrNull(c: CallRow | null): CallRow | null {
  return c && (c.status === 'starting' || c.status === 'running') ? c : null;
}

/** The retry schedule's delay for an attempt (the last one repeats). */
function backoff(attempt: number, delays: readonly number[]): number {
  return delays[Math.min(attempt, delays.length) - 1] ?? 1_000;
}
