import type { Redis } from 'ioredis';
import { PermanentError } from './errors.js';

/** What a photo's bytes are at each step: the upload as received, a decoded working copy, renditions. */
export type BlobKind = 'raw' | 'work' | 'framed' | 'thumbnail' | 'converted';
export const BLOB_KINDS: readonly BlobKind[] = ['raw', 'work', 'framed', 'thumbnail', 'converted'];

const BLOB_NAMES: Record<BlobKind, string> = { raw: 'uploaded bytes', work: 'decoded working copy bytes', framed: 'framed rendition bytes', thumbnail: 'thumbnail bytes', converted: 'converted image bytes' };

/**
 * SET and DEL that keep a running total of the bytes held (`<prefix>blob-bytes`, the
 * photopipe_redis_blob_bytes metric) in the same atomic step, so the total never drifts from
 * what is stored.
 */
const PUT = `local old = redis.call('STRLEN', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
return redis.call('INCRBY', KEYS[2], string.len(ARGV[1]) - old)`;
const DEL = `local n = 0
for i = 2, #KEYS do
  n = n + redis.call('STRLEN', KEYS[i])
  redis.call('DEL', KEYS[i])
end
if n > 0 then redis.call('DECRBY', KEYS[1], n) end
return n`;

/** Where a failed photo's bytes wait for a replay, out of Redis (parked-blobs.ts). */
export interface ColdBlobStore {
  get(photoId: string, kind: BlobKind): Promise<Buffer | null>;
}

/**
 * Photo bytes travel between stages through Redis, never inside messages. They never expire while
 * their photo is not final: nothing the API accepted may disappear because workers were down or
 * backlogged. The pipeline deletes each blob as soon as every stage that reads it is finished; a
 * failed photo's bytes are parked in S3 (out of Redis, so they do not count against load shedding)
 * and read back from there on a Redis miss when it is replayed; the reconciler removes orphans.
 */
/** The scripts as commands of the client (EVALSHA: the script's text is sent once per connection). */
interface BlobCommands {
  ppBlobPut(key: string, total: string, bytes: Buffer): Promise<number>;
  ppBlobDel(numKeys: number, ...keysAndTotal: string[]): Promise<number>;
}

function withBlobCommands(redis: Redis): Redis & BlobCommands {
  const r = redis as Redis & Partial<BlobCommands>;
  if (!r.ppBlobPut) redis.defineCommand('ppBlobPut', { numberOfKeys: 2, lua: PUT });
  if (!r.ppBlobDel) redis.defineCommand('ppBlobDel', { lua: DEL });
  return redis as Redis & BlobCommands;
}

export class BlobStore {
  private readonly redis: Redis & BlobCommands;

  constructor(
    redis: Redis,
    private readonly prefix: string,
    private readonly cold: ColdBlobStore | null = null,
  ) {
    this.redis = withBlobCommands(redis);
  }

  /** The same store, reading misses through from a cold store (workers: parked bytes of replayed photos). */
  withCold(cold: ColdBlobStore): BlobStore {
    return new BlobStore(this.redis, this.prefix, cold);
  }

  key(photoId: string, kind: BlobKind): string {
    return `${this.prefix}blob:${photoId}:${kind}`;
  }

  /** The key pattern every blob matches, and how to read a photo id and kind back from a key. */
  get keyPattern(): string {
    return `${this.prefix}blob:*`;
  }

  parseKey(key: string): { photoId: string; kind: BlobKind } | null {
    const m = /^blob:([0-9a-f-]{36}):(raw|work|framed|thumbnail|converted)$/.exec(key.startsWith(this.prefix) ? key.slice(this.prefix.length) : '');
    return m?.[1] && m[2] ? { photoId: m[1], kind: m[2] as BlobKind } : null;
  }

  /** The Redis key of the running total of blob bytes. */
  get bytesKey(): string {
    return `${this.prefix}blob-bytes`;
  }

  async put(photoId: string, kind: BlobKind, bytes: Buffer): Promise<string> {
    const key = this.key(photoId, kind);
    await this.redis.ppBlobPut(key, this.bytesKey, bytes);
    return key;
  }

  /** Bytes of photos held in Redis now (the running total). */
  async heldBytes(): Promise<number> {
    return Number((await this.redis.get(this.bytesKey)) ?? 0);
  }

  async getOptional(photoId: string, kind: BlobKind): Promise<Buffer | null> {
    return this.redis.getBuffer(this.key(photoId, kind));
  }

  /**
   * A blob, from Redis or else from the cold store (put back into Redis for the next reader). A
   * blob in neither is permanent: it was never stored, or a failed photo's retention ran out.
   */
  async get(photoId: string, kind: BlobKind): Promise<Buffer> {
    const hot = await this.getOptional(photoId, kind);
    if (hot) return hot;
    const parked = this.cold ? await this.cold.get(photoId, kind) : null;
    if (parked) {
      await this.put(photoId, kind, parked);
      return parked;
    }
    throw new PermanentError('blob_missing', `the ${BLOB_NAMES[kind]} of photo ${photoId} are no longer in Redis nor parked (never stored, lost by a Redis without persistence, or past the retention of failed photos)`);
  }

  async exists(photoId: string, kind: BlobKind): Promise<boolean> {
    return (await this.redis.exists(this.key(photoId, kind))) === 1;
  }

  async delete(photoId: string, kinds: readonly BlobKind[]): Promise<void> {
    if (kinds.length === 0) return;
    await this.deleteKeys(kinds.map((k) => this.key(photoId, k)));
  }

  /** Deletes blob keys (the reconciler's orphan sweep); returns the bytes freed. */
  async deleteKeys(keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0;
    return Number(await this.redis.ppBlobDel(keys.length + 1, this.bytesKey, ...keys));
  }
}
