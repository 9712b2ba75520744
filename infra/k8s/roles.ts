/**
 * The long-running roles photopipe runs on Kubernetes besides the API, one entry each: what
 * infra/k8s/generate.ts turns into base/roles.generated.yaml (a Deployment per role) and
 * components/keda/scaledobjects.generated.yaml (a ScaledObject per worker role).
 *
 * Every stage of PIPELINE (src/pipeline/photo-pipeline.ts) must have an entry in STAGE_ROLES:
 * the generator refuses to run without one, and test/unit/k8s-manifests.test.ts fails until the
 * generated files include it. A role that is not a pipeline stage (the reconciler, the webhook
 * sender; later perhaps a dispatcher) goes in OTHER_ROLES.
 *
 * Where the numbers come from (README "Kubernetes" explains them in full):
 * - CPU: README "Performance", CPU ms per photo per stage (whole-system attribution, 2-core
 *   EPYC VM, mean 1.4 MP photos): frame 38.5, thumbnail 20.4, upload 15.2, ingest 7.0 (plus
 *   1-2 s per 12 MP HEIC, FIELD-NOTES), exif 6.4, geocode 0.6. A replica's photos per second
 *   at its CPU request = request cores / CPU seconds per photo.
 * - Memory: worker peak RSS 251 MB (measurement (6), flat in N), so every worker requests
 *   256Mi. Limits leave room for the worst input the limits allow: a 75 MP decode
 *   (MAX_INPUT_PIXELS) for the image roles, prefetch x 25 MiB originals (UPLOAD_MAX_BYTES)
 *   for upload.
 * - KEDA `value` (messages per replica, ready + unacked, `protocol: http`): the backlog one
 *   replica clears within the wait we accept, i.e. photos per second per replica x seconds:
 *   2 s on the interactive lane (someone is waiting for the picture), 60 s on the bulk lane.
 *   It must exceed the prefetch, or a replica's own in-flight messages would scale it out.
 *   `activationValue` only matters with minReplicaCount 0 (an overlay for batch-only
 *   clusters): any interactive message wakes the role, the bulk lane after a small batch.
 */

export interface Resources {
  requests: { cpu: string; memory: string };
  limits: { cpu: string; memory: string };
}

export interface LaneTarget {
  /** KEDA QueueLength target: messages (ready + unacked) per replica. */
  value: number;
  /** Messages above which the trigger counts as active (scaling from/to zero). */
  activationValue: number;
}

export interface StageRole {
  resources: Resources;
  scaling: { minReplicaCount: number; maxReplicaCount: number; interactive: LaneTarget; bulk: LaneTarget };
  /** One line for the generated manifest: where the numbers come from. */
  why: string;
}

export interface OtherRole {
  /** Kubernetes name suffix and compose service name, e.g. `reconciler`. */
  name: string;
  /** The container's arguments after the image's entry point (bin/photopipe.js). */
  args: string[];
  replicas: number;
  resources: Resources;
  why: string;
}

const res = (cpuRequest: string, cpuLimit: string, memoryRequest: string, memoryLimit: string): Resources => ({
  requests: { cpu: cpuRequest, memory: memoryRequest },
  limits: { cpu: cpuLimit, memory: memoryLimit },
});

export const STAGE_ROLES: Record<string, StageRole> = {
  ingest: {
    resources: res('500m', '2', '256Mi', '1Gi'),
    scaling: { minReplicaCount: 1, maxReplicaCount: 6, interactive: { value: 20, activationValue: 0 }, bulk: { value: 500, activationValue: 20 } },
    why: '7.0 CPU ms per JPEG (71 photos/s at 500m) but 1-2 s per 12 MP HEIC: the target assumes HEIC-heavy uploads (20 = 5 x prefetch 4)',
  },
  exif: {
    resources: res('250m', '1', '256Mi', '512Mi'),
    scaling: { minReplicaCount: 1, maxReplicaCount: 4, interactive: { value: 80, activationValue: 0 }, bulk: { value: 2000, activationValue: 20 } },
    why: '6.4 CPU ms per photo: 39 photos/s at 250m; 2 s = 78, 60 s = 2,340',
  },
  geocode: {
    resources: res('100m', '500m', '256Mi', '512Mi'),
    scaling: { minReplicaCount: 1, maxReplicaCount: 3, interactive: { value: 200, activationValue: 0 }, bulk: { value: 5000, activationValue: 20 } },
    why: 'I/O-bound (0.6 CPU ms; a remote geocoder answers in ~100-200 ms): prefetch 16 / ~0.2 s = 80 photos/s, x 2 s = 160; few replicas, since a rate-limited geocoder is not helped by more',
  },
  frame: {
    resources: res('1', '2', '256Mi', '1Gi'),
    scaling: { minReplicaCount: 1, maxReplicaCount: 8, interactive: { value: 50, activationValue: 0 }, bulk: { value: 1500, activationValue: 20 } },
    why: 'CPU-bound, 38.5 CPU ms per photo: 26 photos/s per core; 2 s = 52, 60 s = 1,560',
  },
  thumbnail: {
    resources: res('500m', '2', '256Mi', '1Gi'),
    scaling: { minReplicaCount: 1, maxReplicaCount: 6, interactive: { value: 50, activationValue: 0 }, bulk: { value: 1500, activationValue: 20 } },
    why: 'CPU-bound, 20.4 CPU ms per photo: 24.5 photos/s at 500m; 2 s = 49, 60 s = 1,470',
  },
  upload: {
    resources: res('750m', '1500m', '256Mi', '768Mi'),
    scaling: { minReplicaCount: 1, maxReplicaCount: 6, interactive: { value: 100, activationValue: 0 }, bulk: { value: 3000, activationValue: 20 } },
    why: 'I/O-bound (three S3 PUTs), 15.2 CPU ms per photo: 49 photos/s at 750m (8 slots / ~0.1 s = 80 would need more CPU); 2 s = 98',
  },
  convert: {
    resources: res('1', '2', '256Mi', '1Gi'),
    scaling: { minReplicaCount: 1, maxReplicaCount: 8, interactive: { value: 50, activationValue: 0 }, bulk: { value: 1500, activationValue: 20 } },
    why: 'batch photos only (bulk lane), CPU-bound like frame (one decode and one encode per photo, measured in npm run bench): about one replica per core; 60 s of bulk work per replica',
  },
  store: {
    resources: res('500m', '1500m', '256Mi', '768Mi'),
    scaling: { minReplicaCount: 1, maxReplicaCount: 6, interactive: { value: 100, activationValue: 0 }, bulk: { value: 3000, activationValue: 20 } },
    why: 'batch photos only: one public S3 PUT per photo, I/O-bound like upload (a third of its work); 8 slots',
  },
};

export const OTHER_ROLES: OtherRole[] = [
  {
    name: 'reconciler',
    args: ['reconciler'],
    // More replicas are safe (a Redis lock lets one pass run at a time) but only wait for the lock.
    replicas: 1,
    resources: res('50m', '500m', '128Mi', '512Mi'),
    why: 'one pass a minute over the stale photos; a Redis lock keeps one pass at a time, so one replica',
  },
  {
    name: 'worker-webhook',
    args: ['worker', '--role', 'webhook'],
    // More replicas are safe (each delivery attempt is leased in Postgres); each adds its own
    // WEBHOOK_CONCURRENCY slots and its own per-receiver limit.
    replicas: 1,
    resources: res('100m', '500m', '256Mi', '512Mi'),
    why: 'I/O-bound: signed POSTs of a few KB, at most WEBHOOK_CONCURRENCY (32) in flight for up to WEBHOOK_TIMEOUT_MS each; no image work; RSS measured 163 MB idle, 191 MB peak over 60 events',
  },
  {
    name: 'worker-batch-download',
    args: ['worker', '--role', 'batch-download'],
    // Network-bound: BATCH_DOWNLOAD_CONCURRENCY (16) downloads in flight per replica, each up to
    // UPLOAD_MAX_BYTES in memory until it is in Redis. The dispatcher's window (BATCH_WINDOW per
    // batch) bounds what there is to download at once, so more replicas only help many batches.
    replicas: 2,
    resources: res('250m', '1', '256Mi', '768Mi'),
    why: 'network-bound downloads, 16 in flight per replica x 25 MiB at most in memory; two replicas so that one can restart without a pause',
  },
  {
    name: 'worker-batch-dispatch',
    args: ['worker', '--role', 'batch-dispatch'],
    // A single-active-consumer queue: one replica works, the other stands by and takes over at
    // once. One call in flight per customer is enforced in Postgres, not by the replica count.
    replicas: 2,
    resources: res('100m', '500m', '128Mi', '512Mi'),
    why: 'HTTP coordination only (a few queries and one call per customer at a time); one active replica and one standby (single active consumer)',
  },
];
