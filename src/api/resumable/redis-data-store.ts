import type { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import { DataStore, ERRORS, Upload } from '@tus/utils';
import { LuaScript } from './lua-script.js';

/**
 * An error @tus/server turns into a response: it reads `status_code` and `body` from whatever a
 * store or hook throws (its own ERRORS constants have the same shape).
 */
export class TusResponseError extends Error {
  override readonly name = 'TusResponseError';
  constructor(
    readonly status_code: number,
    readonly body: string,
  ) {
    super(body.trim());
  }
}

/** Checks an upload's first bytes; returns a label kept with the upload, or throws a TusResponseError to refuse it. */
export interface HeadCheck {
  bytes: number;
  check(head: Buffer): string;
}

export interface RedisDataStoreOptions {
  redis: Redis;
  /** Prepended to every key, e.g. `photopipe:`; keys are `<prefix>tus:{<id>}:meta|data|finish`. */
  keyPrefix: string;
  /** Largest Upload-Length accepted; creation above it is refused with 413 before anything is stored. */
  maxBytes: number;
  /** An unfinished upload expires this long after its last PATCH (or creation); Redis frees its bytes. */
  ttlSeconds: number;
  /** How long the small record of an accepted upload (photo id, status URL) stays for a client that lost the answer. */
  finishedTtlSeconds?: number;
  /** Bytes buffered per APPEND: the memory a PATCH holds at most, besides one network chunk. At most 1 MiB. */
  appendPieceBytes?: number;
  /** Run once as soon as `bytes` bytes (or the whole upload, if smaller) are stored. */
  headCheck?: HeadCheck;
  /**
   * Told about every error write() throws itself (refused head, offset conflict, size). Needed
   * because @tus/server's stream pipeline reports an error thrown while the body is still
   * flowing as its generic "Request aborted" 400; a caller that wants the real answer (415,
   * 409) maps it back in onResponseError.
   */
  onWriteError?: (uploadId: string, err: unknown) => void;
}

/** What the routes need to know about an upload without reading its bytes. */
export interface UploadRecord {
  id: string;
  owner: string;
  size: number;
  offset: number;
  metadata: Record<string, string | null>;
  /** Set once the finished upload was handed on; its bytes are then gone. */
  result: string | null;
  /** ISO time of creation or of the last append: the start of the current expiry window. */
  touchedAt: string;
}

export type FinishClaim =
  | { kind: 'claimed' }
  | { kind: 'done'; result: string }
  | { kind: 'busy' }
  | { kind: 'incomplete' }
  | { kind: 'missing' };

const MAX_PIECE_BYTES = 1024 * 1024;

// Appends one piece only if the stored length is the offset the writer expects: the offset is the
// fencing token. A writer whose lock lapsed (paused process, lost lease) cannot interleave its
// bytes with the new holder's; it gets -2 and stops. The TTL of both keys slides with every append.
const APPEND_AT = new LuaScript(`
local size = redis.call('HGET', KEYS[1], 'size')
if not size then return -1 end
if redis.call('HEXISTS', KEYS[1], 'result') == 1 then return -3 end
local len = redis.call('STRLEN', KEYS[2])
if len ~= tonumber(ARGV[1]) then return -2 end
if len + string.len(ARGV[2]) > tonumber(size) then return -4 end
local n = redis.call('APPEND', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'touched_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return n
`);

// Claims the hand-off of a complete upload (at most one process runs accept at a time).
const CLAIM_FINISH = new LuaScript(`
local size = redis.call('HGET', KEYS[1], 'size')
if not size then return {'missing'} end
local result = redis.call('HGET', KEYS[1], 'result')
if result then return {'done', result} end
if redis.call('STRLEN', KEYS[2]) ~= tonumber(size) then return {'incomplete'} end
if redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2], 'NX') then return {'claimed'} end
return {'busy'}
`);

// Records the outcome, frees the bytes, keeps the small record for finishedTtl.
const COMPLETE_FINISH = new LuaScript(`
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'result', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
`);

const RENEW_IF_OWNER = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`);

const DELETE_IF_OWNER = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk);
  throw new TypeError('upload stream yielded a chunk that is not bytes');
}

/**
 * A tus DataStore on Redis, shared by every API process: the upload's bytes are one string value
 * grown with APPEND, its metadata one hash. Supports the creation, creation-with-upload,
 * termination and expiration extensions. Deferred length is not offered (a client must declare
 * Upload-Length, so the size limit is checked before any byte is stored).
 *
 * Expiry slides: every key has a TTL that each append refreshes, so an upload expires ttlSeconds
 * after its last received bytes and Redis itself frees them; deleteExpired() has nothing to do.
 */
export class RedisDataStore extends DataStore {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly maxBytes: number;
  private readonly ttlMs: number;
  private readonly finishedTtlSeconds: number;
  private readonly pieceBytes: number;
  private readonly headCheck: HeadCheck | undefined;
  private readonly onWriteError: ((uploadId: string, err: unknown) => void) | undefined;
  private readonly owners = new WeakMap<Upload, string>();

  constructor(opts: RedisDataStoreOptions) {
    super();
    if (!Number.isInteger(opts.maxBytes) || opts.maxBytes < 1) throw new RangeError('maxBytes must be a positive integer');
    if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds < 1) throw new RangeError('ttlSeconds must be a positive integer');
    const piece = opts.appendPieceBytes ?? 256 * 1024;
    if (!Number.isInteger(piece) || piece < 1 || piece > MAX_PIECE_BYTES) throw new RangeError(`appendPieceBytes must be 1..${MAX_PIECE_BYTES}`);
    this.redis = opts.redis;
    this.prefix = opts.keyPrefix;
    this.maxBytes = opts.maxBytes;
    this.ttlMs = opts.ttlSeconds * 1000;
    this.finishedTtlSeconds = opts.finishedTtlSeconds ?? Math.min(opts.ttlSeconds, 3600);
    this.pieceBytes = piece;
    this.headCheck = opts.headCheck;
    this.onWriteError = opts.onWriteError;
    this.extensions = ['creation', 'creation-with-upload', 'termination', 'expiration'];
  }

  /** Every key an upload can have; the hash tag keeps them in one slot for Lua on a cluster. */
  keysOf(id: string): { meta: string; data: string; finish: string } {
    const base = `${this.prefix}tus:{${id}}`;
    return { meta: `${base}:meta`, data: `${base}:data`, finish: `${base}:finish` };
  }

  /**
   * Binds an upload about to be created to its owner. Called from onUploadCreate, which receives
   * the same Upload object @tus/server then passes to create(); create() refuses an upload
   * without an owner, so an upload can never exist unbound.
   */
  assignOwner(upload: Upload, owner: string): void {
    this.owners.set(upload, owner);
  }

  override async create(upload: Upload): Promise<Upload> {
    const owner = this.owners.get(upload);
    if (!owner) throw new Error('RedisDataStore.create: no owner assigned to the upload (assignOwner must run in onUploadCreate)');
    if (upload.size === undefined) throw ERRORS.UNSUPPORTED_CREATION_DEFER_LENGTH_EXTENSION;
    if (upload.size > this.maxBytes) throw ERRORS.ERR_MAX_SIZE_EXCEEDED;
    const { meta, data } = this.keysOf(upload.id);
    const now = new Date().toISOString();
    upload.creation_date = now;
    upload.storage = { type: 'redis', path: data };
    const replies = await this.redis
      .multi()
      .hset(meta, {
        owner,
        size: String(upload.size),
        metadata: JSON.stringify(upload.metadata ?? {}),
        created_at: now,
        touched_at: now,
      })
      .pexpire(meta, this.ttlMs)
      .set(data, '', 'PX', this.ttlMs)
      .exec();
    throwIfFailed(replies);
    return upload;
  }

  override async remove(id: string): Promise<void> {
    const { meta, data, finish } = this.keysOf(id);
    await this.redis.del(meta, data, finish);
  }

  /**
   * Streams the body into Redis in pieces of at most appendPieceBytes. Whatever arrived before the
   * stream ended or failed (a cut connection) is stored too, so a resumed PATCH continues after it:
   * the offset is what Redis holds, never what a process believes it received.
   */
  override async write(stream: Readable, id: string, offset: number): Promise<number> {
    const { meta, data } = this.keysOf(id);
    const [sizeText, head] = await this.redis.hmget(meta, 'size', 'head');
    if (sizeText === null || sizeText === undefined) throw ERRORS.FILE_NOT_FOUND;
    const size = Number(sizeText);
    let headChecked = !this.headCheck || (head !== null && head !== undefined);
    let stored = offset;
    const pieces: Buffer[] = [];
    let pending = 0;

    const flush = async () => {
      if (pending === 0) return;
      const piece = pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces, pending);
      pieces.length = 0;
      pending = 0;
      const n = Number(await APPEND_AT.run(this.redis, [meta, data], [stored, piece, this.ttlMs, new Date().toISOString()]));
      if (n === -1) throw ERRORS.FILE_NOT_FOUND;
      if (n === -2 || n === -3) throw ERRORS.INVALID_OFFSET;
      if (n === -4) throw ERRORS.ERR_SIZE_EXCEEDED;
      stored = n;
      if (!headChecked && this.headCheck && stored >= Math.min(this.headCheck.bytes, size)) {
        await this.checkHead(id, this.headCheck);
        headChecked = true;
      }
    };

    // Until the head is checked, the first flush happens as soon as the head is complete, so a
    // non-image is refused after its first bytes rather than after a whole piece.
    const limit = () => (headChecked ? this.pieceBytes : Math.max(1, (this.headCheck?.bytes ?? 1) - stored));
    let flushing = false;
    try {
      for await (const chunk of stream) {
        let bytes = toBuffer(chunk);
        while (bytes.length > 0) {
          const take = bytes.subarray(0, limit() - pending);
          pieces.push(take);
          pending += take.length;
          bytes = bytes.subarray(take.length);
          if (pending >= limit()) {
            flushing = true;
            await flush();
            flushing = false;
          }
        }
      }
      flushing = true;
      await flush();
    } catch (err) {
      if (flushing) {
        this.onWriteError?.(id, err);
        throw err;
      }
      // A source error (connection cut) still leaves valid bytes received in order: keep them.
      try {
        await flush();
      } catch (flushErr) {
        this.onWriteError?.(id, flushErr);
      }
      throw err;
    }
    return stored;
  }

  private async checkHead(id: string, headCheck: HeadCheck): Promise<void> {
    const { meta, data } = this.keysOf(id);
    const head = await this.redis.getrangeBuffer(data, 0, headCheck.bytes - 1);
    let label: string;
    try {
      label = headCheck.check(head);
    } catch (err) {
      // Refused: its bytes are of no use to anyone, free them now rather than at expiry.
      await this.remove(id);
      throw err;
    }
    await this.redis.hset(meta, 'head', label);
  }

  override async getUpload(id: string): Promise<Upload> {
    const record = await this.inspect(id);
    if (!record) throw ERRORS.FILE_NOT_FOUND;
    return new Upload({
      id,
      size: record.size,
      offset: record.offset,
      metadata: record.metadata,
      storage: { type: 'redis', path: this.keysOf(id).data },
      // @tus/server computes expiry as creation_date + getExpiration(). Ours slides with every
      // append, so the window's start is the last append: Upload-Expires and its 410 then agree
      // with the Redis TTL instead of cutting off an upload that is still making progress.
      creation_date: record.touchedAt,
    });
  }

  /** The upload's owner, size, stored offset, metadata and outcome; null when it does not exist (any more). */
  async inspect(id: string): Promise<UploadRecord | null> {
    const { meta, data } = this.keysOf(id);
    const replies = await this.redis.multi().hgetall(meta).strlen(data).exec();
    const [fields, length] = throwIfFailed(replies) as [Record<string, string>, number];
    if (!fields.size || !fields.owner) return null;
    const size = Number(fields.size);
    const result = fields.result ?? null;
    return {
      id,
      owner: fields.owner,
      size,
      // Once handed on, the bytes are gone but the upload is complete.
      offset: result !== null ? size : length,
      metadata: parseMetadata(fields.metadata),
      result,
      touchedAt: fields.touched_at ?? new Date().toISOString(),
    };
  }

  /** The whole upload; only called once it is complete (at most maxBytes). */
  async readAll(id: string): Promise<Buffer> {
    const { meta, data } = this.keysOf(id);
    const [size, bytes] = await Promise.all([this.redis.hget(meta, 'size'), this.redis.getBuffer(data)]);
    if (size === null || bytes === null) throw ERRORS.FILE_NOT_FOUND;
    if (bytes.length !== Number(size)) throw new TusResponseError(409, 'the upload is not complete\n');
    return bytes;
  }

  /** Claims the hand-off of a complete upload for leaseMs; the holder must complete, renew or release it. */
  async claimFinish(id: string, token: string, leaseMs: number): Promise<FinishClaim> {
    const { meta, data, finish } = this.keysOf(id);
    const reply = (await CLAIM_FINISH.run(this.redis, [meta, data, finish], [token, leaseMs])) as [string, string?];
    const kind = reply[0];
    if (kind === 'done') return { kind, result: reply[1] ?? '' };
    if (kind === 'claimed' || kind === 'busy' || kind === 'incomplete' || kind === 'missing') return { kind };
    throw new Error(`unexpected finish claim reply ${String(kind)}`);
  }

  async renewFinish(id: string, token: string, leaseMs: number): Promise<boolean> {
    return Number(await RENEW_IF_OWNER.run(this.redis, [this.keysOf(id).finish], [token, leaseMs])) === 1;
  }

  /** Records the hand-off's result and frees the bytes; false when the claim was lost meanwhile. */
  async completeFinish(id: string, token: string, result: string): Promise<boolean> {
    const { meta, data, finish } = this.keysOf(id);
    return Number(await COMPLETE_FINISH.run(this.redis, [meta, data, finish], [token, result, this.finishedTtlSeconds])) === 1;
  }

  async releaseFinish(id: string, token: string): Promise<void> {
    await DELETE_IF_OWNER.run(this.redis, [this.keysOf(id).finish], [token]);
  }

  override async declareUploadLength(): Promise<void> {
    throw ERRORS.UNSUPPORTED_CREATION_DEFER_LENGTH_EXTENSION;
  }

  /** Nothing to sweep: every key carries a TTL, so Redis frees an abandoned upload's bytes itself. */
  override async deleteExpired(): Promise<number> {
    return 0;
  }

  override getExpiration(): number {
    return this.ttlMs;
  }
}

function parseMetadata(text: string | undefined): Record<string, string | null> {
  if (!text) return {};
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null) return {};
  const out: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(parsed)) out[k] = typeof v === 'string' ? v : null;
  return out;
}

function throwIfFailed(replies: [Error | null, unknown][] | null): unknown[] {
  if (!replies) throw new Error('redis transaction was discarded');
  return replies.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}
