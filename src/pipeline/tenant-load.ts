import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../shared/config.js';
import { UnavailableError } from '../shared/errors.js';
import type { PhotoIntakeRepo } from '../db/photos/photo-intake-repo.js';
import type { PhotoLane } from '../db/photos/photo-row.js';

/** A tenant is over one of its limits: try again after retryAfterSeconds (HTTP 429). */
export class TenantLimitError extends Error {
  override readonly name = 'TenantLimitError';
  constructor(
    readonly code: 'rate_limited' | 'too_many_in_flight',
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}

export interface TenantLimits {
  uploadsPerMinute: number;
  maxInFlight: number;
}

/** How long a tenant's in-flight count is reused: one count query per tenant per second per process. */
const IN_FLIGHT_CACHE_MS = 1_000;

/**
 * One tenant's load on the pipeline, and what it may do about it: admission (uploads per minute,
 * shared by every API process through Redis; photos in flight, counted in Postgres) and the lane
 * its new photos take. A tenant with a backlog above BULK_LANE_THRESHOLD sends its new photos
 * through the bulk lane, so another tenant's single photo never waits behind its backlog.
 */
export class TenantLoad {
  private readonly limiters = new Map<number, RateLimiterRedis>();
  private readonly counts = new LRUCache<string, { n: number; at: number }>({ max: 10_000 });

  constructor(
    private readonly config: Pick<Config, 'REDIS_KEY_PREFIX' | 'TENANT_UPLOADS_PER_MINUTE' | 'TENANT_MAX_IN_FLIGHT' | 'TENANT_LIMITS' | 'BULK_LANE_THRESHOLD'>,
    private readonly redis: Redis,
    private readonly intake: PhotoIntakeRepo,
  ) {}

  limitsOf(tenantId: string): TenantLimits {
    return this.config.TENANT_LIMITS[tenantId] ?? { uploadsPerMinute: this.config.TENANT_UPLOADS_PER_MINUTE, maxInFlight: this.config.TENANT_MAX_IN_FLIGHT };
  }

  async inFlight(tenantId: string): Promise<number> {
    const hit = this.counts.get(tenantId);
    if (hit && Date.now() - hit.at < IN_FLIGHT_CACHE_MS) return hit.n;
    const n = await this.intake.inFlight(tenantId);
    this.counts.set(tenantId, { n, at: Date.now() });
    return n;
  }

  /** Throws TenantLimitError when the tenant may not add a photo now; spends one upload of its rate. */
  async admit(tenantId: string): Promise<void> {
    const limits = this.limitsOf(tenantId);
    if (limits.maxInFlight > 0) {
      const n = await this.inFlight(tenantId);
      if (n >= limits.maxInFlight) {
        throw new TenantLimitError('too_many_in_flight', `${n} photos of this tenant are still being processed (limit ${limits.maxInFlight}); try again when some have finished`, 10);
      }
    }
    if (limits.uploadsPerMinute > 0) {
      try {
        await this.limiter(limits.uploadsPerMinute).consume(tenantId, 1);
      } catch (err) {
        if (err instanceof RateLimiterRes) {
          throw new TenantLimitError('rate_limited', `more than ${limits.uploadsPerMinute} uploads a minute for this tenant`, Math.max(1, Math.ceil(err.msBeforeNext / 1000)));
        }
        throw new UnavailableError('redis_unavailable', 'cannot check the upload rate right now', 5, { cause: err });
      }
    }
  }

  async laneFor(tenantId: string): Promise<PhotoLane> {
    const threshold = this.config.BULK_LANE_THRESHOLD;
    if (threshold === 0) return 'interactive';
    return (await this.inFlight(tenantId)) >= threshold ? 'bulk' : 'interactive';
  }

  /**
   * A photo of the tenant was accepted by this process: counted at once, so a burst between two
   * count queries still takes the bulk lane past the threshold (at most the threshold per process
   * goes interactive).
   */
  accepted(tenantId: string): void {
    const hit = this.counts.get(tenantId);
    if (hit) hit.n++;
  }

  private limiter(points: number): RateLimiterRedis {
    let l = this.limiters.get(points);
    if (!l) {
      l = new RateLimiterRedis({ storeClient: this.redis, keyPrefix: `${this.config.REDIS_KEY_PREFIX}rl:uploads:${points}`, points, duration: 60 });
      this.limiters.set(points, l);
    }
    return l;
  }
}
