import {
  CreateBucketCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { PermanentError, RetryableError } from './errors.js';
import type { Config } from './config.js';

export interface PutObjectInput {
  key: string;
  body: Buffer;
  contentType: string;
  visibility: 'public' | 'private';
  cacheControl?: string;
}

/** Object storage for originals and renditions. Every call has a timeout; failures come back typed. */
export class Storage {
  private readonly client: S3Client;
  private readonly presigner: S3Client;
  readonly bucket: string;
  private readonly publicBase: string;

  constructor(private readonly config: Config) {
    if (!config.S3_ENDPOINT) throw new Error('S3_ENDPOINT is not set (npm start sets it when it starts the local S3 server)');
    this.bucket = config.S3_BUCKET;
    // retries belong to the pipeline (backoff through RabbitMQ), not to a blocked handler
    this.client = s3Client(config, config.S3_ENDPOINT, { maxAttempts: 1, requestTimeoutMs: config.S3_TIMEOUT_MS });
    this.presigner = config.S3_PRESIGN_ENDPOINT ? s3Client(config, config.S3_PRESIGN_ENDPOINT) : this.client;
    const base = config.S3_PUBLIC_BASE_URL ?? `${config.S3_ENDPOINT.replace(/\/$/, '')}/${this.bucket}`;
    this.publicBase = base.replace(/\/$/, '');
  }

  publicUrl(key: string): string {
    return `${this.publicBase}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  async put(input: PutObjectInput, signal?: AbortSignal): Promise<void> {
    await this.call(
      () =>
        this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: input.key,
            Body: input.body,
            ContentType: input.contentType,
            ContentLength: input.body.length,
            CacheControl: input.cacheControl,
            ACL: this.config.S3_OBJECT_ACLS ? (input.visibility === 'public' ? 'public-read' : 'private') : undefined,
          }),
          { abortSignal: signal },
        ),
      `put ${input.key}`,
    );
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    return this.call(async () => {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
      if (!out.Body) throw new RetryableError('s3_empty_body', `empty body for ${key}`);
      return Buffer.from(await out.Body.transformToByteArray());
    }, `get ${key}`);
  }

  /** The object's bytes, or null when there is no such object. */
  async getOptional(key: string, signal?: AbortSignal): Promise<Buffer | null> {
    try {
      return await this.get(key, signal);
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause;
      if (cause instanceof S3ServiceException && (cause.name === 'NoSuchKey' || cause.$metadata.httpStatusCode === 404)) return null;
      throw err;
    }
  }

  /** Deletes objects (missing ones are fine): one request per 1,000 keys. */
  async remove(keys: readonly string[], signal?: AbortSignal): Promise<void> {
    for (let i = 0; i < keys.length; i += 1_000) {
      const batch = keys.slice(i, i + 1_000);
      await this.call(
        () => this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }), { abortSignal: signal }),
        `delete ${batch.length} objects`,
      );
    }
  }

  presignGet(key: string): Promise<string> {
    return getSignedUrl(this.presigner, new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
      expiresIn: this.config.S3_PRESIGN_TTL_SECONDS,
    });
  }

  async ping(signal?: AbortSignal): Promise<void> {
    await this.call(() => this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal }), 'head bucket');
  }

  /** Creates the bucket if missing (local servers, first start). */
  async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch {
      await this.call(() => this.client.send(new CreateBucketCommand({ Bucket: this.bucket })), 'create bucket');
    }
  }

  close(): void {
    this.client.destroy();
    if (this.presigner !== this.client) this.presigner.destroy();
  }

  private async call<T>(fn: () => Promise<T>, what: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof S3ServiceException) {
        const status = err.$metadata.httpStatusCode ?? 0;
        // Access denied (expired credentials, clock skew, a policy) and a missing bucket are the
        // store's configuration, not the photo's fault: an operator fixes them, so retry with backoff.
        const operatorFixable = status === 403 || err.name === 'NoSuchBucket';
        // Other 4xx (throttling and timeouts aside) mean the request itself is wrong: retrying will not help.
        if (status >= 400 && status < 500 && status !== 408 && status !== 429 && !operatorFixable) {
          throw new PermanentError('s3_rejected', `S3 ${what}: ${status} ${err.name}`, { cause: err });
        }
        throw new RetryableError('s3_unavailable', `S3 ${what}: ${status || 'no status'} ${err.name}`, { cause: err });
      }
      if (err instanceof PermanentError || err instanceof RetryableError) throw err;
      // Socket errors, timeouts, aborts: the store may be back later.
      throw new RetryableError('s3_unreachable', `S3 ${what}: ${(err as Error).message}`, { cause: err });
    }
  }
}

function s3Client(config: Config, endpoint: string, opts: { maxAttempts?: number; requestTimeoutMs?: number } = {}): S3Client {
  return new S3Client({
    endpoint,
    region: config.S3_REGION,
    forcePathStyle: config.S3_FORCE_PATH_STYLE,
    // Without explicit keys the SDK's default chain applies (instance roles, AWS_* variables).
    credentials:
      config.S3_ACCESS_KEY_ID && config.S3_SECRET_ACCESS_KEY
        ? { accessKeyId: config.S3_ACCESS_KEY_ID, secretAccessKey: config.S3_SECRET_ACCESS_KEY }
        : undefined,
    maxAttempts: opts.maxAttempts,
    // SigV4 already signs each body's SHA-256, which S3 verifies, so the SDK's extra CRC32
    // checksums (on by default since early 2025) add CPU but no protection, and several
    // S3-compatible stores reject or mishandle their headers. Only where an API requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: opts.requestTimeoutMs ? { requestTimeout: opts.requestTimeoutMs, connectionTimeout: 5_000 } : undefined,
  });
}
