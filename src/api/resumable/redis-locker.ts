import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import { LuaScript } from './lua-script.js';

export interface RedisLockerOptions {
  /** Runs SET/PEXPIRE/DEL/PUBLISH. */
  redis: Redis;
  /** A connection of its own, used only to SUBSCRIBE to release requests (a subscribed connection can run nothing else). */
  subscriber: Redis;
  /** Prepended to every key, e.g. `photopipe:`; lock keys are `<prefix>tus:{<id>}:lock`. */
  keyPrefix: string;
  /** A lock expires this long after its holder last renewed it: the longest a dead holder blocks a resume. */
  lockLeaseMs: number;
  /** How long a request waits for a lock before failing (tus answers 500 "failed to acquire lock"). */
  acquireTimeoutMs?: number;
  /** Pause between attempts to take a held lock. */
  retryMs?: number;
}

const RENEW = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`);
const RELEASE = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

/** How often a waiting request repeats its release request (a holder may have subscribed, or reconnected, since). */
const ASK_AGAIN_MS = 500;

/**
 * A tus Locker shared by every API process on the same Redis. A lock is `SET NX PX` with a random
 * token, renewed while held and deleted only by its token's owner. A request that finds the lock
 * held publishes a release request on one channel; the process holding it calls the holder's
 * tus `requestRelease` callback, which ends the holder's PATCH gracefully (its received bytes are
 * kept) after the server's lockDrainTimeout. A holder that died stops renewing, so its lock is
 * free after at most lockLeaseMs.
 *
 * A holder paused for longer than the lease can outlive its lock; the data store's appends are
 * conditional on the stored length, so such a holder cannot corrupt the upload either way.
 */
export class RedisLocker implements Locker {
  readonly redis: Redis;
  readonly keyPrefix: string;
  readonly leaseMs: number;
  readonly acquireTimeoutMs: number;
  readonly retryMs: number;
  readonly channel: string;
  private readonly subscriber: Redis;
  /** Release callbacks of the locks this process holds, by upload id. */
  private readonly holders = new Map<string, Set<() => void>>();
  private subscribed: Promise<void> | null = null;
  private readonly onMessage = (channel: string, message: string) => {
    if (channel !== this.channel) return;
    for (const release of this.holders.get(message) ?? []) release();
  };

  constructor(opts: RedisLockerOptions) {
    if (!Number.isInteger(opts.lockLeaseMs) || opts.lockLeaseMs < 300) throw new RangeError('lockLeaseMs must be an integer >= 300');
    this.redis = opts.redis;
    this.subscriber = opts.subscriber;
    this.keyPrefix = opts.keyPrefix;
    this.leaseMs = opts.lockLeaseMs;
    this.acquireTimeoutMs = opts.acquireTimeoutMs ?? Math.max(15_000, 3 * opts.lockLeaseMs);
    this.retryMs = opts.retryMs ?? 50;
    this.channel = `${opts.keyPrefix}tus:lock-release`;
  }

  newLock(id: string): Lock {
    return new RedisLock(this, id);
  }

  lockKey(id: string): string {
    return `${this.keyPrefix}tus:{${id}}:lock`;
  }

  /** Subscribes once; a failed attempt (Redis away) is retried by the next lock(). */
  ensureSubscribed(): Promise<void> {
    if (!this.subscribed) {
      this.subscriber.on('message', this.onMessage);
      this.subscribed = this.subscriber
        .subscribe(this.channel)
        .then(() => undefined)
        .catch((err: unknown) => {
          this.subscriber.off('message', this.onMessage);
          this.subscribed = null;
          throw err;
        });
    }
    return this.subscribed;
  }

  addHolder(id: string, release: () => void): void {
    let set = this.holders.get(id);
    if (!set) this.holders.set(id, (set = new Set()));
    set.add(release);
  }

  removeHolder(id: string, release: () => void): void {
    const set = this.holders.get(id);
    if (!set) return;
    set.delete(release);
    if (set.size === 0) this.holders.delete(id);
  }

  /** Stops listening for release requests; the subscriber connection stays the caller's to close. */
  async close(): Promise<void> {
    const subscribed = this.subscribed;
    this.subscribed = null;
    this.subscriber.off('message', this.onMessage);
    if (subscribed) await subscribed.then(() => this.subscriber.unsubscribe(this.channel)).catch(() => undefined);
  }
}

class RedisLock implements Lock {
  private token: string | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private release: (() => void) | null = null;

  constructor(
    private readonly locker: RedisLocker,
    private readonly id: string,
  ) {}

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const { redis, leaseMs, retryMs } = this.locker;
    const key = this.locker.lockKey(this.id);
    await this.locker.ensureSubscribed();
    const token = randomUUID();
    const deadline = Date.now() + this.locker.acquireTimeoutMs;
    let askedAt = 0;
    for (;;) {
      if (signal.aborted) throw ERRORS.ERR_LOCK_TIMEOUT;
      if ((await redis.set(key, token, 'PX', leaseMs, 'NX')) === 'OK') break;
      const now = Date.now();
      if (now - askedAt >= ASK_AGAIN_MS) {
        // Ask whoever holds it to let go: usually a PATCH whose client went away without the
        // server noticing (a half-open mobile connection).
        await redis.publish(this.locker.channel, this.id);
        askedAt = now;
      }
      if (now >= deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
      await sleep(retryMs, signal);
    }
    this.token = token;
    const askToRelease = () => {
      Promise.resolve(requestRelease()).catch(() => undefined);
    };
    this.release = askToRelease;
    this.locker.addHolder(this.id, askToRelease);
    this.renewTimer = setInterval(() => {
      RENEW.run(redis, [key], [token, leaseMs]).then(
        (renewed) => {
          // Lost (expired while this process stalled, or Redis lost it): stop writing soon.
          if (Number(renewed) !== 1 && this.token === token) askToRelease();
        },
        // Redis away: try again at the next tick; if the lease runs out meanwhile the store's
        // conditional appends still keep the upload consistent.
        () => undefined,
      );
    }, Math.max(100, Math.floor(leaseMs / 3)));
    this.renewTimer.unref();
  }

  async unlock(): Promise<void> {
    const token = this.token;
    if (!token) return;
    this.token = null;
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = null;
    if (this.release) this.locker.removeHolder(this.id, this.release);
    this.release = null;
    // Not deleted (Redis away): the lease frees it shortly; failing the request would not help.
    await RELEASE.run(this.locker.redis, [this.locker.lockKey(this.id)], [token]).catch(() => undefined);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
