import type { GetMessage } from 'amqplib';
import type { Redis } from 'ioredis';
import { STAGES, type Config, type StageName } from '../shared/config.js';
import { withRedisLock } from '../shared/redis-lock.js';
import type { Broker } from './broker.js';
import { decodeMessage, H, messageIdOf, type StageMessage } from './messages.js';

export interface DlqEntry {
  id: string;
  stage: StageName;
  photoId: string | null;
  tenantId: string | null;
  errorClass: string | null;
  code: string | null;
  reason: string;
  attempts: number | null;
  firstFailureAt: string | null;
  lastFailureAt: string | null;
  deadLetteredAt: string | null;
  originalRoutingKey: string;
  /** The letter's headers (x-stage, x-reason, x-attempts, ... and the broker's x-death), as strings and numbers. */
  headers: Record<string, unknown>;
  body: unknown;
}

/** Which dead letters a replay or listing takes: by letter id, by photo, by stage and error code. */
export interface LetterFilter {
  stage?: StageName;
  ids?: string[];
  photoIds?: string[];
  code?: string;
}

export interface ReplayResult {
  replayed: { id: string; stage: StageName; photoId: string | null }[];
  skipped: { id: string; reason: string }[];
}

/**
 * Called before a dead letter goes back to its stage: the photo is marked processing again. Returns
 * why the letter cannot be replayed (it stays in the DLQ), or null.
 */
export type ReopenPhoto = (msg: StageMessage, stage: StageName) => Promise<string | null>;

/**
 * Runs one browse at a time across every process (the API's admin routes, the CLI). A browse takes
 * the letters off the queue until it hands them back; a second browse meanwhile would not see them.
 */
export type BrowseLock = <T>(fn: () => Promise<T>) => Promise<T>;

/** Upper bound on waiting for browsed letters to be ready again (normally a few milliseconds). */
const RETURN_SETTLE_MS = 3_000;

const str = (v: unknown): string | null => (typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : null);
const num = (v: unknown): number | null => (typeof v === 'number' ? v : typeof v === 'string' && v !== '' && !Number.isNaN(Number(v)) ? Number(v) : null);

/**
 * Inspection and replay of the per-stage dead-letter queues over AMQP. Browsing takes messages
 * without acking them and closes the channel, which hands them all back to the queue untouched.
 */
export class DlqService {
  constructor(
    private readonly broker: Broker,
    private readonly reopen: ReopenPhoto,
    private readonly exclusive: BrowseLock,
  ) {}

  stages(stage?: StageName): StageName[] {
    return stage ? [stage] : [...STAGES];
  }

  async counts(): Promise<Record<StageName, number>> {
    const out = {} as Record<StageName, number>;
    for (const s of STAGES) out[s] = await this.broker.queueDepth(this.broker.topology.dlq(s));
    return out;
  }

  list(opts: { stage?: StageName; limit?: number; photoIds?: string[]; code?: string } = {}): Promise<DlqEntry[]> {
    return this.exclusive(() => this.listNow(opts));
  }

  show(id: string): Promise<DlqEntry | null> {
    return this.exclusive(() => this.showNow(id));
  }

  /**
   * Sends dead letters back to the stage they failed in, with a fresh attempt count. The photo
   * is reopened first; stages that already succeeded are not run again (every stage skips work
   * it has recorded as done).
   */
  replay(opts: LetterFilter): Promise<ReplayResult> {
    return this.exclusive(() => this.replayNow(opts));
  }

  private async listNow(opts: { stage?: StageName; limit?: number; photoIds?: string[]; code?: string }): Promise<DlqEntry[]> {
    const limit = opts.limit ?? 50;
    const out: DlqEntry[] = [];
    const photos = opts.photoIds && opts.photoIds.length > 0 ? new Set(opts.photoIds) : null;
    for (const stage of this.stages(opts.stage)) {
      if (out.length >= limit) break;
      await this.browse(stage, async (msg) => {
        const entry = toEntry(stage, msg);
        if ((photos && !photos.has(entry.photoId ?? '')) || (opts.code !== undefined && entry.code !== opts.code)) return 'continue';
        out.push(entry);
        return out.length < limit ? 'continue' : 'stop';
      });
    }
    return out;
  }

  private async showNow(id: string): Promise<DlqEntry | null> {
    let found: DlqEntry | null = null;
    for (const stage of STAGES) {
      await this.browse(stage, async (msg) => {
        if (messageIdOf(msg) !== id) return 'continue';
        found = toEntry(stage, msg);
        return 'stop';
      });
      if (found) break;
    }
    return found;
  }

  private async replayNow(opts: LetterFilter): Promise<ReplayResult> {
    const wanted = opts.ids && opts.ids.length > 0 ? new Set(opts.ids) : null;
    const photos = opts.photoIds && opts.photoIds.length > 0 ? new Set(opts.photoIds) : null;
    const result: ReplayResult = { replayed: [], skipped: [] };
    for (const stage of this.stages(opts.stage)) {
      await this.browse(stage, async (msg, ack) => {
        const id = messageIdOf(msg) ?? '';
        if (wanted && !wanted.has(id)) return 'continue';
        const entry = toEntry(stage, msg);
        if ((photos && !photos.has(entry.photoId ?? '')) || (opts.code !== undefined && entry.code !== opts.code)) return 'continue';
        const decoded = decodeMessage(msg.content);
        if (!decoded.ok) {
          result.skipped.push({ id, reason: decoded.reason });
          return 'continue';
        }
        const refused = await this.reopen(decoded.message, stage);
        if (refused) {
          result.skipped.push({ id, reason: refused });
          return 'continue';
        }
        await this.broker.publishRaw(this.broker.topology.workExchange, entry.originalRoutingKey, msg.content, {
          headers: { 'x-replayed-from': id, 'x-replayed-at': new Date().toISOString() },
        });
        ack(msg); // only after the republish is confirmed
        result.replayed.push({ id, stage, photoId: entry.photoId });
        if (wanted) wanted.delete(id);
        return wanted && wanted.size === 0 ? 'stop' : 'continue';
      });
      if (wanted && wanted.size === 0) break;
    }
    for (const id of wanted ?? []) result.skipped.push({ id, reason: 'not found in any dead-letter queue' });
    return result;
  }

  async purge(stage: StageName): Promise<number> {
    const ch = await this.broker.openToolChannel();
    try {
      const r = await ch.purgeQueue(this.broker.topology.dlq(stage));
      return r.messageCount;
    } finally {
      await ch.close().catch(() => {});
    }
  }

  /**
   * Visits each message currently in the stage's DLQ once; unacked ones return to the queue on close.
   * Quorum queues put returned messages back asynchronously: right after a close, the queue's
   * ready count (and a get) can miss them for a moment, so a list followed at once by a replay
   * skipped letters. Before returning, wait (bounded) until the handed-back letters are ready again.
   */
  private async browse(stage: StageName, visit: (msg: GetMessage, ack: (msg: GetMessage) => void) => Promise<'continue' | 'stop'>): Promise<void> {
    const queue = this.broker.topology.dlq(stage);
    const ch = await this.broker.openToolChannel();
    let before: number;
    let taken = 0;
    let acked = 0;
    try {
      before = (await ch.checkQueue(queue)).messageCount;
      for (let i = 0; i < before; i++) {
        const msg = await ch.get(queue, { noAck: false });
        if (!msg) break;
        taken++;
        const ack = (m: GetMessage) => {
          ch.ack(m);
          acked++;
        };
        if ((await visit(msg, ack)) === 'stop') break;
      }
    } finally {
      await ch.close().catch(() => {});
    }
    if (taken > acked) await this.waitReady(queue, before - acked, RETURN_SETTLE_MS);
  }

  private async waitReady(queue: string, atLeast: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const ch = await this.broker.openToolChannel();
    try {
      while (Date.now() < deadline) {
        if ((await ch.checkQueue(queue)).messageCount >= atLeast) return;
        await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      await ch.close().catch(() => {});
    }
  }
}

function toEntry(stage: StageName, msg: GetMessage): DlqEntry {
  const h = (msg.properties.headers ?? {}) as Record<string, unknown>;
  const decoded = decodeMessage(msg.content);
  let body: unknown;
  try {
    body = JSON.parse(msg.content.toString('utf8'));
  } catch {
    body = msg.content.toString('utf8').slice(0, 500);
  }
  // Dead-lettered by the broker itself (delivery limit, reject): no reason headers of ours, only x-death.
  const brokerReason = str(h['x-first-death-reason']);
  return {
    id: messageIdOf(msg) ?? `${stage}:${msg.fields.deliveryTag}`,
    stage,
    photoId: str(h['x-photo-id']) ?? (decoded.ok ? decoded.message.photoId : null),
    tenantId: str(h['x-tenant-id']) ?? (decoded.ok ? decoded.message.tenantId : null),
    errorClass: str(h[H.errorClass]),
    code: str(h[H.errorCode]) ?? (brokerReason ? `broker_${brokerReason}` : null),
    reason: str(h[H.reason]) ?? (brokerReason ? `dead-lettered by RabbitMQ: ${brokerReason}` : 'unknown'),
    attempts: num(h[H.attempts]),
    firstFailureAt: str(h[H.firstFailureAt]),
    lastFailureAt: str(h[H.lastFailureAt]),
    deadLetteredAt: str(h[H.deadLetteredAt]),
    originalRoutingKey: str(h[H.originalRoutingKey]) ?? stage,
    headers: plainHeaders(h),
    body,
  };
}

/** The browse lock shared by the API and the CLI: one DLQ browse at a time per AMQP prefix. */
export function dlqBrowseLock(config: Pick<Config, 'REDIS_KEY_PREFIX' | 'AMQP_PREFIX'>, redis: Redis): BrowseLock {
  const key = `${config.REDIS_KEY_PREFIX}dlq-browse:${config.AMQP_PREFIX}`;
  return (fn) => withRedisLock(redis, key, { ttlMs: 15_000, waitMs: 20_000 }, fn);
}

/**
 * Headers as JSON can show them: buffers as text, nested arrays and tables kept. The quorum
 * queue's own `x-delivery-count` is left out: every browse re-queues the letter and bumps it, so
 * it counts browses of the dead letter, not attempts at the photo (that is `x-attempts`).
 */
function plainHeaders(h: Record<string, unknown>): Record<string, unknown> {
  const plain = (v: unknown): unknown => {
    if (Buffer.isBuffer(v)) return v.toString('utf8');
    if (Array.isArray(v)) return v.map(plain);
    if (v instanceof Date) return v.toISOString();
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, plain(x)]));
    return v;
  };
  const { 'x-delivery-count': _browses, ...rest } = h;
  return plain(rest) as Record<string, unknown>;
}
