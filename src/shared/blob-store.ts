import type { Redis } from 'ioredis';
import { PermanentError } from './errors.js';

/** What a photo's bytes are at each step: the upload as received, a decoded working copy, renditions. */
export type BlobKind = 'raw' | 'work' | 'framed' | 'thumbnail';

const BLOB_NAMES: Record<BlobKind, string> = { raw: 'uploaded bytes', work: 'decoded working copy bytes', framed: 'framed rendition bytes', thumbnail: 'thumbnail bytes' };

/**
 * Photo bytes travel between stages through Redis, never inside messages. Every blob has a TTL
 * as a safety net; the pipeline deletes them as soon as no stage needs them any more.
 */
export class BlobStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  key(photoId: string, kind: BlobKind): string {
    return `${this.prefix}blob:${photoId}:${kind}`;
  }

  async put(photoId: string, kind: BlobKind, bytes: Buffer): Promise<string> {
    const key = this.key(photoId, kind);
    await this.redis.set(key, bytes, 'EX', this.ttlSeconds);
    return key;
  }

  async getOptional(photoId: string, kind: BlobKind): Promise<Buffer | null> {
    return this.redis.getBuffer(this.key(photoId, kind));
  }

  /** A missing blob is permanent: its TTL ran out, or it was never stored; retrying cannot bring it back. */
  async get(photoId: string, kind: BlobKind): Promise<Buffer> {
    const bytes = await this.getOptional(photoId, kind);
    if (!bytes) throw new PermanentError('blob_missing', `the ${BLOB_NAMES[kind]} of photo ${photoId} are no longer in Redis (expired or deleted)`);
    return bytes;
  }

  async exists(photoId: string, kind: BlobKind): Promise<boolean> {
    return (await this.redis.exists(this.key(photoId, kind))) === 1;
  }

  async delete(photoId: string, kinds: readonly BlobKind[]): Promise<void> {
    if (kinds.length === 0) return;
    await this.redis.del(...kinds.map((k) => this.key(photoId, k)));
  }
}
