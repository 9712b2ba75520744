import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import type { BlobStore } from '../shared/blob-store.js';
import type { ParkedBlobs } from '../shared/parked-blobs.js';
import type { BlobRetentionRepo } from '../db/photos/blob-retention-repo.js';

export interface BlobSweepDeps {
  redis: Redis;
  blobs: BlobStore;
  parked: ParkedBlobs;
  retention: BlobRetentionRepo;
  log: Logger;
}

export interface BlobSweepReport {
  /** Failed photos whose bytes were still in Redis, now parked in S3. */
  parked: number;
  /** Parked bytes removed: the photo is complete, a duplicate, or failed past the retention. */
  dropped: number;
  /** Redis blobs whose photo is final or does not exist. */
  orphans: number;
}

/** A blob without a photo row may belong to an upload being accepted right now: leave it this long. */
const ORPHAN_IDLE_SECONDS = 600;
const BATCH = 200;

/**
 * Keeps every photo's bytes where they belong, between the pipeline's own clean-up steps:
 *  - failed photos whose bytes are still in Redis (their parking failed) are parked in S3;
 *  - parked bytes that no replay will read (the photo completed, became a duplicate, or failed
 *    more than FAILED_RETENTION_SECONDS ago) are deleted;
 *  - Redis blobs of photos that are final, or of no photo at all (an accept whose undo failed),
 *    are deleted. Accepted bytes of photos that are not final are never touched.
 * The Redis scan resumes where the previous sweep stopped, a bounded number of keys per sweep.
 */
export class BlobSweeper {
  private cursor = '0';

  constructor(
    private readonly deps: BlobSweepDeps,
    private readonly opts: { retentionMs: number; scanKeysPerSweep?: number; parkGraceMs?: number },
  ) {}

  async sweep(signal?: AbortSignal): Promise<BlobSweepReport> {
    const report: BlobSweepReport = { parked: 0, dropped: 0, orphans: 0 };
    const { retention, parked, blobs, log } = this.deps;

    for (const ref of await retention.unparkedFailures(BATCH, this.opts.parkGraceMs ?? 30_000)) {
      if (signal?.aborted) return report;
      await parked.park(blobs, ref.photoId);
      await retention.markParked(ref);
      report.parked++;
    }
    for (const ref of await retention.parkedToDrop(BATCH, this.opts.retentionMs)) {
      if (signal?.aborted) return report;
      await parked.drop(ref.photoId);
      await retention.markDropped(ref);
      report.dropped++;
    }
    report.orphans = await this.sweepOrphans(signal);
    if (report.parked + report.dropped + report.orphans > 0) log.info({ ...report }, 'blob sweep');
    return report;
  }

  private async sweepOrphans(signal?: AbortSignal): Promise<number> {
    const { redis, blobs, retention } = this.deps;
    let budget = this.opts.scanKeysPerSweep ?? 20_000;
    let removed = 0;
    do {
      const [next, keys] = await redis.scan(this.cursor, 'MATCH', blobs.keyPattern, 'COUNT', 1_000);
      this.cursor = next;
      budget -= 1_000;
      const parsed = keys.map((k) => ({ key: k, ref: blobs.parseKey(k) })).filter((x): x is { key: string; ref: NonNullable<typeof x.ref> } => x.ref !== null);
      if (parsed.length === 0) continue;
      const owners = await retention.owners([...new Set(parsed.map((p) => p.ref.photoId))]);
      const doomed: string[] = [];
      for (const { key, ref } of parsed) {
        const owner = owners.get(ref.photoId);
        if (owner) {
          const final = owner.status === 'complete' || owner.status === 'duplicate' || (owner.status === 'failed' && owner.parked);
          if (final) doomed.push(key);
        } else {
          const idle = await redis.object('IDLETIME', key).catch(() => null);
          if (typeof idle === 'number' && idle > ORPHAN_IDLE_SECONDS) doomed.push(key);
        }
      }
      if (doomed.length > 0) {
        await blobs.deleteKeys(doomed);
        removed += doomed.length;
      }
    } while (this.cursor !== '0' && budget > 0 && !signal?.aborted);
    return removed;
  }
}
