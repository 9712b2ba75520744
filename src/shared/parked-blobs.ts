import { BLOB_KINDS, type BlobKind, type BlobStore, type ColdBlobStore } from './blob-store.js';
import type { Storage } from './storage.js';

/**
 * A failed photo's bytes, parked in S3 (private objects under `_parked/<photo>/<kind>`) so that
 * they stop counting against Redis memory (and the upload shedding limit) while they wait for a
 * replay, for FAILED_RETENTION_SECONDS. A replayed photo's stages read them back through
 * BlobStore's cold store on a Redis miss; the reconciler deletes them once the photo is final or
 * the retention is over.
 */
export class ParkedBlobs implements ColdBlobStore {
  constructor(private readonly storage: Storage) {}

  static key(photoId: string, kind: BlobKind): string {
    return `_parked/${photoId}/${kind}`;
  }

  async get(photoId: string, kind: BlobKind): Promise<Buffer | null> {
    return this.storage.getOptional(ParkedBlobs.key(photoId, kind));
  }

  /**
   * Copies every blob the photo has in Redis to S3, then removes them from Redis. Idempotent: a
   * second run finds nothing left in Redis. Returns the kinds parked.
   */
  async park(blobs: BlobStore, photoId: string): Promise<BlobKind[]> {
    const parked: BlobKind[] = [];
    for (const kind of BLOB_KINDS) {
      const bytes = await blobs.getOptional(photoId, kind);
      if (!bytes) continue;
      await this.storage.put({ key: ParkedBlobs.key(photoId, kind), body: bytes, contentType: 'application/octet-stream', visibility: 'private', cacheControl: 'private, no-store' });
      parked.push(kind);
    }
    // Only once every copy is stored: a failure above leaves Redis as it was, for the next try.
    await blobs.delete(photoId, parked);
    return parked;
  }

  async drop(photoId: string): Promise<void> {
    await this.storage.remove(BLOB_KINDS.map((k) => ParkedBlobs.key(photoId, k)));
  }
}
