/**
 * What a tenant is told about a failed photo. The stored reason (photos.error.reason, the dead
 * letter's x-reason) is for operators: it may name S3 keys, hosts, socket errors or library text.
 * Tenants get the stable `code` and a reason from this table instead. A stored reason is passed
 * on only where it is our own wording about the image and matches that wording exactly (so a
 * changed message falls back to the fixed text rather than leaking). Details stay in the worker
 * logs, the dead letters and the admin API.
 */

const UNAVAILABLE = 'a service the pipeline depends on was unavailable; replaying the photo may help';
const INTERNAL = 'an internal error stopped the processing of this photo';
const STORAGE = 'the photo could not be stored; replaying it may help';
const DOWNLOAD = 'the image could not be downloaded';

interface PublicReason {
  text: string | ((stage: string) => string);
  /** Stored reasons matching one of these are our own wording about the image and may be shown as they are. */
  keep?: RegExp[];
}

const MP = String.raw`\d{1,9}\.\d MP`;

const REASONS: Record<string, PublicReason> = {
  // The image itself (permanent).
  image_too_large: {
    text: 'the image has more pixels than the limit',
    keep: [
      new RegExp(String.raw`^image is \d{1,6}x\d{1,6} \(${MP}\), above the ${MP} limit$`),
      new RegExp(String.raw`^image is above the ${MP} pixel limit \((frame|thumbnail|working copy|header|convert)\)$`),
    ],
  },
  corrupt_image: { text: 'the image data is corrupt or truncated' },
  unsupported_image: { text: 'the file is not an image format that can be processed' },
  empty_file: { text: 'the upload is empty' },
  // Refused at upload (the API answers 422; listed so that every code has a public text).
  checksum_mismatch: { text: 'the upload did not match the checksum it declared' },
  heic_thread_failed: { text: 'the HEIC decoder failed on this image' },
  worker_crashed: { text: 'processing this image repeatedly stopped the worker, so it was given up' },
  blob_missing: { text: 'the uploaded bytes are gone (lost by a storage restart, or kept past the retention of failed photos); upload the photo again' },
  invalid_data: { text: 'a value read from the file could not be stored' },
  timeout: { text: (stage) => `processing took too long (${stage})` },

  // Storage (S3).
  s3_unavailable: { text: STORAGE },
  s3_unreachable: { text: STORAGE },
  s3_empty_body: { text: STORAGE },
  s3_rejected: { text: 'the storage refused the photo' },

  // Other dependencies.
  redis_unavailable: { text: UNAVAILABLE },
  postgres_unavailable: { text: UNAVAILABLE },
  amqp_unavailable: { text: UNAVAILABLE },
  amqp_publish_failed: { text: UNAVAILABLE },
  amqp_unroutable: { text: UNAVAILABLE },
  busy: { text: UNAVAILABLE },
  overloaded: { text: UNAVAILABLE },

  // Our own faults.
  malformed_message: { text: INTERNAL },
  unknown_photo: { text: INTERNAL },
  tenant_mismatch: { text: INTERNAL },
  unexpected: { text: INTERNAL },
  injected_fault: { text: 'injected test failure' },

  // Geocoding (best effort: the photo completes without a place).
  geocoder_unavailable: { text: 'the geocoding service was unavailable; the photo has no place for now' },
  geocoder_rejected: { text: 'the geocoding service refused the request' },

  // Downloads (src/shared/net FetchError codes).
  blocked_address: { text: `${DOWNLOAD}: its address may not be fetched` },
  bad_scheme: { text: `${DOWNLOAD}: only http and https URLs are fetched` },
  invalid_url: { text: `${DOWNLOAD}: the URL is not valid` },
  too_many_redirects: { text: `${DOWNLOAD}: too many redirects` },
  too_large: { text: `${DOWNLOAD}: it is larger than the limit` },
  connect_failed: { text: `${DOWNLOAD}: its server could not be reached` },
  dns_failed: { text: `${DOWNLOAD}: its host name did not resolve` },
  http_status: { text: `${DOWNLOAD}: its server answered with an error` },
  download_failed: { text: DOWNLOAD },

  // Batch ingestion: the customer's batch API.
  batch_job_failed: { text: 'the batch API reported that the job handling this image failed' },
  batch_api_refused: { text: 'the batch API refused the call' },
  batch_api_unavailable: { text: 'the batch API did not answer the call, after every attempt' },
  bad_answer: { text: 'the batch API answered outside the contract' },
  no_output: { text: INTERNAL },
};

/** Reasons written without a code, in our own words (a photo still failed in another stage after a replay). */
const UNCODED_OWN_REASONS = new Set(['still failed: replay its dead letter too']);

export interface StoredFailure {
  stage: string;
  reason: string;
  code?: string | null;
}

export interface PublicFailure {
  stage: string;
  code: string | null;
  reason: string;
}

export function publicFailure(f: StoredFailure): PublicFailure {
  const code = f.code ?? null;
  if (code === null) return { stage: f.stage, code, reason: UNCODED_OWN_REASONS.has(f.reason) ? f.reason : 'processing failed' };
  const entry = Object.hasOwn(REASONS, code) ? REASONS[code] : undefined;
  if (!entry) return { stage: f.stage, code, reason: 'processing failed' };
  if (entry.keep?.some((re) => re.test(f.reason))) return { stage: f.stage, code, reason: f.reason };
  return { stage: f.stage, code, reason: typeof entry.text === 'function' ? entry.text(f.stage) : entry.text };
}

/** The codes this table knows (for tests that check every code the code base throws is covered). */
export const KNOWN_FAILURE_CODES: readonly string[] = Object.keys(REASONS);
