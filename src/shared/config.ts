import { z } from 'zod';
import { PIPELINE, STAGES, type StageName } from '../pipeline/photo-pipeline.js';

/**
 * The whole configuration of every photopipe process, read once from the environment at
 * start-up. A bad value stops the process with a message naming the variable.
 */

// The stage names come from the pipeline's declaration; re-exported for the many modules that only need the names.
export { STAGES, type StageName };

const intFromEnv = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max);

const boolFromEnv = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const msList = z
  .string()
  .transform((s, ctx) => {
    const parts = s.split(',').map((p) => p.trim()).filter(Boolean).map(Number);
    if (parts.length === 0 || parts.some((n) => !Number.isInteger(n) || n <= 0)) {
      ctx.addIssue({ code: 'custom', message: 'expected a comma-separated list of positive integers (milliseconds)' });
      return z.NEVER;
    }
    return parts;
  });

/** "frame=3,upload=8" -> { frame: 3, upload: 8 }; stage names are checked. */
const perStageInts = z.string().transform((s, ctx) => {
  const out: Partial<Record<StageName, number>> = {};
  for (const part of s.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [name, raw] = part.split('=');
    const value = Number(raw);
    if (!name || !(STAGES as readonly string[]).includes(name) || !Number.isInteger(value) || value <= 0) {
      ctx.addIssue({ code: 'custom', message: `bad entry "${part}": expected stage=positiveInteger with stage one of ${STAGES.join(', ')}` });
      return z.NEVER;
    }
    out[name as StageName] = value;
  }
  return out;
});

/** "acme=120/500,big=0/100000" -> per tenant: uploads per minute / photos in flight (0 = no limit). */
const tenantLimits = z.string().transform((s, ctx) => {
  const out: Record<string, { uploadsPerMinute: number; maxInFlight: number }> = {};
  for (const part of s.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([a-zA-Z0-9][a-zA-Z0-9_-]{0,62})=(\d+)\/(\d+)$/.exec(part);
    if (!m?.[1] || m[2] === undefined || m[3] === undefined) {
      ctx.addIssue({ code: 'custom', message: `bad entry "${part}": expected tenant=uploadsPerMinute/maxInFlight (0 = no limit)` });
      return z.NEVER;
    }
    out[m[1]] = { uploadsPerMinute: Number(m[2]), maxInFlight: Number(m[3]) };
  }
  return out;
});

export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  HOST: z.string().default('0.0.0.0'),
  PORT: intFromEnv(0, 65535).default(8080),
  PUBLIC_BASE_URL: z.url().optional(),
  /**
   * Proxies whose X-Forwarded-For the API believes for the client's address (fastify's trustProxy;
   * the failed-auth limiter counts per address): "true" (any), or comma-separated addresses/CIDRs
   * such as "10.0.0.0/8,127.0.0.1". Unset: none.
   */
  TRUST_PROXY: z
    .string()
    .transform((s): boolean | string => (s === 'true' ? true : s === 'false' ? false : s))
    .optional(),

  /** Socket inactivity (either direction) after which a connection is closed. */
  HTTP_CONNECTION_TIMEOUT_MS: intFromEnv(1_000, 3_600_000).default(60_000),
  /** How long an idle keep-alive connection stays open between requests. */
  HTTP_KEEP_ALIVE_TIMEOUT_MS: intFromEnv(100, 3_600_000).default(10_000),
  /** The whole request (headers and body) must arrive within this time (408 otherwise). */
  HTTP_REQUEST_TIMEOUT_MS: intFromEnv(1_000, 3_600_000).default(120_000),
  /** The request's headers must arrive within this time of the connection or previous request (408 otherwise). */
  HTTP_HEADERS_TIMEOUT_MS: intFromEnv(100, 3_600_000).default(10_000),
  /** Largest request head (request line and headers together); 431 above. */
  HTTP_MAX_HEADER_BYTES: intFromEnv(1_024, 1_048_576).default(16_384),
  /** Requests served on one keep-alive connection before it is closed (0 = no limit). */
  HTTP_MAX_REQUESTS_PER_SOCKET: intFromEnv(0).default(1_000),
  /** Connections the API holds open at once; further ones are closed at once (0 = no limit). */
  HTTP_MAX_CONNECTIONS: intFromEnv(0).default(1_024),

  /** Failed authentications (unknown, revoked or missing key, wrong admin key) allowed per client address and window; 429 past it. */
  AUTH_FAILURE_LIMIT: intFromEnv(1, 1_000_000).default(30),
  AUTH_FAILURE_WINDOW_SECONDS: intFromEnv(1, 86_400).default(60),
  /** Verified API keys kept per process (least recently used go first), by SHA-256 of the key. */
  AUTH_CACHE_MAX_ENTRIES: intFromEnv(1, 10_000_000).default(10_000),
  /** How long a verified key is believed without asking Postgres: a revoked key stops within this time. */
  AUTH_CACHE_TTL_MS: intFromEnv(1, 3_600_000).default(30_000),
  /** How long an unknown key is remembered as unknown (a key created meanwhile works after this). */
  AUTH_NEGATIVE_CACHE_TTL_MS: intFromEnv(1, 3_600_000).default(5_000),

  DATABASE_URL: z.string().url().default('postgres://postgres@127.0.0.1:5432/photopipe'),
  DATABASE_POOL_MAX: intFromEnv(1, 200).default(10),
  DATABASE_STATEMENT_TIMEOUT_MS: intFromEnv(100).default(15_000),

  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
  REDIS_KEY_PREFIX: z.string().min(1).default('photopipe:'),
  REDIS_COMMAND_TIMEOUT_MS: intFromEnv(50).default(5_000),
  /**
   * How long a failed photo keeps its bytes (parked in S3, out of Redis) so that it can be replayed.
   * Accepted bytes never expire while their photo is not final.
   */
  FAILED_RETENTION_SECONDS: intFromEnv(1).default(7 * 24 * 3600),

  AMQP_URL: z.string().url().default('amqp://guest:guest@127.0.0.1:5672'),
  AMQP_PREFIX: z.string().regex(/^[a-zA-Z0-9_.-]+$/).default('photopipe'),
  QUEUE_TYPE: z.enum(['quorum', 'classic']).default('quorum'),
  AMQP_PUBLISH_TIMEOUT_MS: intFromEnv(100).default(5_000),
  AMQP_HEARTBEAT_SECONDS: intFromEnv(1, 600).default(15),
  /** Quorum queues only: the broker dead-letters a message after this many deliveries (a crash loop backstop). */
  QUEUE_DELIVERY_LIMIT: intFromEnv(2, 1000).default(10),

  S3_ENDPOINT: z.string().url().optional(),
  S3_REGION: z.string().default('us-east-1'),
  S3_BUCKET: z.string().min(3).default('photopipe'),
  S3_ACCESS_KEY_ID: z.string().optional(),
  S3_SECRET_ACCESS_KEY: z.string().optional(),
  S3_FORCE_PATH_STYLE: boolFromEnv.default(true),
  /** Base URL under which public renditions are served; defaults to endpoint/bucket (path style). */
  S3_PUBLIC_BASE_URL: z.string().url().optional(),
  /**
   * Send canned ACLs (public-read / private) with each object. Turn off for buckets with ACLs
   * disabled (the AWS default since 2023) and MinIO, and grant public reads of the renditions
   * with a bucket policy on keys *\/*\/framed.jpg, *\/*\/thumbnail.jpg and *\/*\/batch.* instead.
   */
  S3_OBJECT_ACLS: boolFromEnv.default(true),
  /** Endpoint presigned URLs are made for, when clients reach S3 under another name than the workers (e.g. in compose). */
  S3_PRESIGN_ENDPOINT: z.string().url().optional(),
  S3_TIMEOUT_MS: intFromEnv(100).default(15_000),
  S3_PRESIGN_TTL_SECONDS: intFromEnv(10, 7 * 24 * 3600).default(900),
  /** Used by `npm start` only, when S3_ENDPOINT is unset: the local S3-compatible server. */
  LOCAL_S3_PORT: intFromEnv(0, 65535).default(9000),
  LOCAL_S3_DIR: z.string().default('.local/s3'),

  UPLOAD_MAX_BYTES: intFromEnv(1).default(25 * 1024 * 1024),
  MAX_INPUT_PIXELS: intFromEnv(1).default(75_000_000),
  FRAME_MAX_BYTES: intFromEnv(1).default(5 * 1024 * 1024),
  /** Largest width and height of a tenant's frame PNG (4096 = at most 16.8 MP, decoded in full when it is uploaded). */
  FRAME_MAX_SIDE_PX: intFromEnv(16, 16_384).default(4_096),

  /** Resumable (tus) uploads: an unfinished upload expires this long after its last received bytes, and Redis frees them. */
  RESUMABLE_UPLOAD_TTL_SECONDS: intFromEnv(1, 7 * 24 * 3_600).default(24 * 3_600),
  /** Resumable uploads: the shared lock's lease; a process that died holding an upload blocks its resume for at most this long. */
  RESUMABLE_LOCK_LEASE_MS: intFromEnv(300, 600_000).default(10_000),

  /**
   * Outbound requests to URLs users give us (webhooks, batch URL fetching) may reach loopback
   * addresses (127/8, ::1). For tests and a sidecar on the same host only (refused with
   * NODE_ENV=production); private, link-local and metadata addresses stay refused.
   */
  FETCH_ALLOW_LOOPBACK: boolFromEnv.default(false),

  /** Webhook delivery: the wait before each retry of a failed delivery, one retry per value, then it is given up (default: 9 retries over about 23.6 h). */
  WEBHOOK_RETRY_DELAYS_MS: msList.default([10_000, 60_000, 300_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000, 28_800_000, 28_800_000]),
  /** One delivery attempt's time limit (connect, answer and body). */
  WEBHOOK_TIMEOUT_MS: intFromEnv(100, 120_000).default(10_000),
  /** Deliveries a webhook process runs at once (its prefetch). */
  WEBHOOK_CONCURRENCY: intFromEnv(1, 1_000).default(32),
  /** Deliveries to one receiver (tenant and origin) a webhook process runs at once (twice this per tenant); more wait in the delay queues, holding no slot. */
  WEBHOOK_MAX_IN_FLIGHT_PER_RECEIVER: intFromEnv(1, 1_000).default(4),

  RETRY_DELAYS_MS: msList.default([1_000, 5_000, 30_000, 120_000, 600_000]),
  RETRY_JITTER: z.coerce.number().min(0).max(0.9).default(0.2),
  MAX_ATTEMPTS: intFromEnv(1, 100).default(6),
  STAGE_MAX_ATTEMPTS: perStageInts.default({}),
  STAGE_TIMEOUT_MS: perStageInts.default({}),
  STAGE_PREFETCH: perStageInts.default({}),
  /** A message redelivered this many times without an outcome (its worker died each time) is dead-lettered. */
  CRASH_REDELIVERY_LIMIT: intFromEnv(1, 100).default(5),

  /** Uploads wait in Redis until processed: refuse new ones (503) above this (0 = never). */
  SHED_REDIS_MAX_BYTES: intFromEnv(0).default(512 * 1024 * 1024),
  SHED_INGEST_QUEUE_MAX: intFromEnv(0).default(0),
  SHED_CHECK_INTERVAL_MS: intFromEnv(50).default(1_000),

  /** Per-tenant admission: uploads per minute and photos in flight (429 above; 0 = no limit). */
  TENANT_UPLOADS_PER_MINUTE: intFromEnv(0).default(1_200),
  TENANT_MAX_IN_FLIGHT: intFromEnv(0).default(10_000),
  TENANT_LIMITS: tenantLimits.default({}),
  /** A tenant with more photos in flight than this gets its new ones in the bulk lane (0 = never). */
  BULK_LANE_THRESHOLD: intFromEnv(0).default(50),
  /** Share of a worker's slots the bulk lane gets while both lanes have work waiting. */
  BULK_LANE_SHARE: z.coerce.number().min(0).max(1).default(0.2),

  /** Reverse geocoding: the bundled offline data (default, no set-up) or the GeoNames web service. */
  GEOCODER: z.enum(['offline', 'geonames']).default('offline'),
  /** No town farther than this from the photo (km); beyond it the country at most. */
  PLACE_MAX_DISTANCE_KM: z.coerce.number().positive().max(500).default(25),
  GEONAMES_USERNAME: z.string().min(1).optional(),
  GEONAMES_BASE_URL: z.url().default('http://api.geonames.org'),
  /** The call budget shared by every geocode process (GeoNames' free tier: ~1,000 credits an hour per username). */
  GEONAMES_CALLS_PER_WINDOW: intFromEnv(1).default(300),
  GEONAMES_WINDOW_SECONDS: intFromEnv(1).default(3_600),
  GEONAMES_CACHE_TTL_SECONDS: intFromEnv(1).default(30 * 24 * 3_600),
  GEONAMES_TIMEOUT_MS: intFromEnv(100).default(10_000),
  /** Longest pause of every geocode process after a quota error (default: until the service's hour, day or week resets). */
  GEONAMES_MAX_PAUSE_SECONDS: intFromEnv(1).optional(),

  /** Workers and the reconciler serve /metrics, /healthz and /readyz on this port (0 = any free port). */
  METRICS_PORT: intFromEnv(0, 65535).default(9464),
  /** Address of that port (HOST is the API's). */
  METRICS_HOST: z.string().default('0.0.0.0'),
  /** Off: no Prometheus metrics and no fleet counts (for measuring what they cost). */
  METRICS_ENABLED: boolFromEnv.default(true),
  /** RabbitMQ's management API, for queue depths with unacked counts on the dashboard and /metrics (unset: ready counts only, over AMQP). */
  RABBITMQ_MANAGEMENT_URL: z.url().optional(),

  SHUTDOWN_GRACE_MS: intFromEnv(100).default(15_000),

  /** Most URLs one batch may have (a body or a list). */
  BATCH_MAX_URLS: intFromEnv(1, 1_000_000).default(100_000),
  /** Longest URL accepted in a batch (characters). */
  BATCH_URL_MAX_LENGTH: intFromEnv(16, 65_536).default(2_048),
  /** Body limit of POST /v1/batches ({"urls": [...]}); longer lists go by listUrl (streamed). */
  BATCH_BODY_MAX_BYTES: intFromEnv(1_024).default(16 * 1024 * 1024),
  /** Largest URL list read from a listUrl (bytes on the wire; it is streamed, never held whole). */
  BATCH_LIST_MAX_BYTES: intFromEnv(1_024).default(256 * 1024 * 1024),
  /** Time to read a whole URL list while POST /v1/batches waits. */
  BATCH_LIST_TIMEOUT_MS: intFromEnv(1_000).default(120_000),
  /** One image download: the whole exchange, redirects and body included. */
  BATCH_DOWNLOAD_TIMEOUT_MS: intFromEnv(100).default(30_000),
  BATCH_DOWNLOAD_MAX_REDIRECTS: intFromEnv(0, 20).default(5),
  /** Attempts per URL for retryable failures (5xx, timeouts, connection errors); none for 404/410/non-images. */
  BATCH_DOWNLOAD_MAX_ATTEMPTS: intFromEnv(1, 100).default(5),
  /** Downloads in flight per batch-download process (network-bound: many). */
  BATCH_DOWNLOAD_CONCURRENCY: intFromEnv(1, 1_000).default(16),
  /**
   * Items of one batch released to download and not final yet: bounds the bytes a batch holds in
   * Redis (about this many downloads plus their converted images) whatever its size.
   */
  BATCH_WINDOW: intFromEnv(1, 100_000).default(128),
  /** A released item whose download message seems lost (still not downloaded) is released again after this long. */
  BATCH_REQUEUE_AFTER_MS: intFromEnv(1_000).default(30 * 60_000),
  /** One HTTP call to a customer's batch API (start or poll). */
  BATCH_API_TIMEOUT_MS: intFromEnv(100).default(30_000),
  /** Time between polls of a running call (mode poll). */
  BATCH_POLL_INTERVAL_MS: intFromEnv(50).default(2_000),
  /** Attempts to start one call on retryable failures (5xx, timeouts) before the batch fails. */
  BATCH_CALL_MAX_ATTEMPTS: intFromEnv(1, 1_000).default(10),
  /** Niceness (0-19) a worker process takes when it runs batch-only roles (convert, store, batch-download, batch-dispatch); 0 = unchanged. */
  BULK_ROLE_NICE: intFromEnv(0, 19).default(10),
  /** Niceness (0-19) of every other worker process: on shared cores the API's uploads go first; 0 = unchanged. */
  WORKER_NICE: intFromEnv(0, 19).default(5),
  /** Every dispatcher asks for a pass over every customer with a running batch this often (heals lost wake-ups). */
  BATCH_SWEEP_INTERVAL_MS: intFromEnv(100).default(5_000),

  ADMIN_API_KEY: z.string().min(16).optional(),

  SUPERVISOR_INITIAL_BACKOFF_MS: intFromEnv(10).default(1_000),
  SUPERVISOR_MAX_BACKOFF_MS: intFromEnv(10).default(30_000),
  SUPERVISOR_CRASH_LIMIT: intFromEnv(1).default(5),
  SUPERVISOR_CRASH_WINDOW_MS: intFromEnv(1_000).default(60_000),

  RECONCILE_INTERVAL_MS: intFromEnv(1_000).default(60_000),
  /** Must exceed the longest retry delay, or photos waiting in a delay queue look stuck. */
  RECONCILE_STALE_MS: intFromEnv(1_000).default(15 * 60_000),
});

export type Env = z.infer<typeof envSchema>;

export interface Config extends Env {
  readonly stage: (name: StageName) => { maxAttempts: number; timeoutMs: number; prefetch: number };
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** The longest a message may wait in a delay queue, jitter included. */
export function longestRetryDelayMs(c: Pick<Env, 'RETRY_DELAYS_MS' | 'RETRY_JITTER'>): number {
  return Math.ceil(Math.max(...c.RETRY_DELAYS_MS) * (1 + c.RETRY_JITTER));
}

/**
 * What a production process must not run with: the local defaults (the Postgres superuser, RabbitMQ's
 * guest account, the local S3 stand-in's keys), which are fine on a laptop and wrong anywhere else.
 */
function developmentDefaults(present: Record<string, string | undefined>, e: Env): string[] {
  const out: string[] = [];
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'AMQP_URL', 'S3_ENDPOINT'] as const) {
    if (present[name] === undefined) out.push(`${name}: must be set (the default points at a local development service)`);
  }
  const db = new URL(e.DATABASE_URL);
  if (decodeURIComponent(db.username) === 'postgres' || db.username === '') out.push('DATABASE_URL: connects as the Postgres superuser; use a role of its own');
  if (decodeURIComponent(new URL(e.AMQP_URL).username) === 'guest') out.push("AMQP_URL: uses RabbitMQ's guest account; use a user of its own");
  if (e.S3_ACCESS_KEY_ID === 'S3RVER') out.push('S3_ACCESS_KEY_ID: the local development S3 server\'s key');
  return out;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable (VAR= in a compose file or a shell) means "not set", as orchestrators use it.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.GEOCODER === 'geonames' && !e.GEONAMES_USERNAME) throw new ConfigError('invalid configuration:\n  GEONAMES_USERNAME: required when GEOCODER=geonames');
  if (e.NODE_ENV === 'production') {
    const unsafe = developmentDefaults(present, e);
    if (unsafe.length > 0) throw new ConfigError(`invalid configuration (NODE_ENV=production refuses development defaults):\n${unsafe.map((l) => `  ${l}`).join('\n')}`);
  }
  if (e.NODE_ENV === 'production' && e.FETCH_ALLOW_LOOPBACK) {
    throw new ConfigError('invalid configuration (NODE_ENV=production):\n  FETCH_ALLOW_LOOPBACK: outbound fetches of customer URLs may not reach loopback in production');
  }
  // A failed photo's bytes must outlive every retry wait, or an operator could never replay it.
  if (e.FAILED_RETENTION_SECONDS * 1000 < longestRetryDelayMs(e)) {
    throw new ConfigError(
      `invalid configuration:\n  FAILED_RETENTION_SECONDS: ${e.FAILED_RETENTION_SECONDS} s is shorter than the longest retry delay (${longestRetryDelayMs(e)} ms with jitter, RETRY_DELAYS_MS)`,
    );
  }
  if (e.HTTP_HEADERS_TIMEOUT_MS > e.HTTP_REQUEST_TIMEOUT_MS) {
    throw new ConfigError(`invalid configuration:\n  HTTP_HEADERS_TIMEOUT_MS: ${e.HTTP_HEADERS_TIMEOUT_MS} must not exceed HTTP_REQUEST_TIMEOUT_MS (${e.HTTP_REQUEST_TIMEOUT_MS})`);
  }
  const config: Config = {
    ...e,
    stage: (name) => ({
      maxAttempts: e.STAGE_MAX_ATTEMPTS[name] ?? e.MAX_ATTEMPTS,
      timeoutMs: e.STAGE_TIMEOUT_MS[name] ?? PIPELINE.spec[name].defaults.timeoutMs,
      prefetch: e.STAGE_PREFETCH[name] ?? PIPELINE.spec[name].defaults.prefetch,
    }),
  };
  return Object.freeze(config);
}
