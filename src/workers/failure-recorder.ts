import type { Logger } from '../shared/logger.js';
import type { Broker } from '../queues/broker.js';
import { PIPELINE } from '../pipeline/photo-pipeline.js';
import { afterCommit } from './stage-runner.js';
import { announceFinal } from './photo-events.js';
import type { BlobStore } from '../shared/blob-store.js';
import type { ParkedBlobs } from '../shared/parked-blobs.js';
import type { FailureRecorder } from '../queues/stage-consumer.js';
import type { StageMessage } from '../queues/messages.js';
import type { PhotoRepos } from '../db/photos/index.js';
import type { PhotoRef } from '../db/photos/photo-row.js';

/**
 * Writes a stage's outcome where users and the reconciler see it, and, when a photo becomes
 * failed, parks its bytes in S3 so that they stop counting against Redis memory while they wait
 * for a replay. Parking runs after the failure is recorded and does not hold up the dead letter;
 * if it fails (S3 away), the reconciler parks the photo later. A best-effort stage's failure
 * (geocode) does not fail the photo: it is recorded on the stage, and what follows goes on.
 */
export class PhotoFailureRecorder implements FailureRecorder {
  private readonly parking = new Set<Promise<void>>();

  constructor(
    private readonly deps: { photos: PhotoRepos; blobs: BlobStore; parked: ParkedBlobs; broker: Broker; log: Logger },
  ) {}

  async recordFailure(ref: StageMessage, f: Parameters<FailureRecorder['recordFailure']>[1]): Promise<'recorded' | 'moot' | 'missing'> {
    if (this.deps.photos.stages.isBestEffort(f.stage)) {
      const r = await this.deps.photos.stages.recordBestEffortFailure(ref, f);
      if (r.outcome !== 'recorded') return r.outcome;
      const log = this.deps.log.child({ photoId: ref.photoId, tenantId: ref.tenantId, stage: f.stage });
      log.warn({ code: f.code }, 'best-effort stage failed: the photo goes on without it');
      await afterCommit(this.deps, PIPELINE, ref, r.completion, [f.stage], log);
      return 'recorded';
    }
    const outcome = await this.deps.photos.stages.recordFailure(ref, f);
    if (outcome === 'recorded') {
      // The photo is failed: tell its followers (before the dead letter; a failed publish retries all this).
      await announceFinal(this.deps.broker, ref, 'failed');
      const p = this.park(ref).finally(() => this.parking.delete(p));
      this.parking.add(p);
    }
    return outcome;
  }

  async recordRetry(ref: PhotoRef): Promise<void> {
    await this.deps.photos.stages.touchProgress(ref.photoId);
  }

  /** Waits (bounded) for parkings in progress, at shutdown. */
  async drain(timeoutMs: number): Promise<void> {
    const all = Promise.allSettled([...this.parking]);
    await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  private async park(ref: PhotoRef): Promise<void> {
    try {
      const kinds = await this.deps.parked.park(this.deps.blobs, ref.photoId);
      await this.deps.photos.retention.markParked(ref);
      this.deps.log.info({ photoId: ref.photoId, tenantId: ref.tenantId, kinds }, 'failed photo: bytes parked in S3 until replayed or past the retention');
    } catch (err) {
      this.deps.log.warn({ photoId: ref.photoId, err: (err as Error).message }, 'could not park a failed photo\'s bytes; the reconciler will try again');
    }
  }
}
