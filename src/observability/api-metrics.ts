import { Counter, Gauge, Histogram } from 'prom-client';
import { STAGES } from '../pipeline/photo-pipeline.js';
import type { BlobStore } from '../shared/blob-store.js';
import type { Broker } from '../queues/broker.js';
import { ProcessMetrics } from './metrics.js';
import type { QueueStats } from './queue-stats.js';

export interface ApiMetrics {
  metrics: ProcessMetrics;
  /** An answered upload: its status, and its size when the body was read. */
  upload(status: number, bytes: number | null): void;
}

/**
 * The API's metrics: uploads by status and size, and, read when scraped, the fleet's gauges the
 * API is in a position to read: bytes of photos held in Redis, queue depths and consumers, DLQ sizes.
 */
export function apiMetrics(deps: { blobs: BlobStore; broker: Broker; queues: QueueStats }, opts: { enabled: boolean }): ApiMetrics {
  const metrics = new ProcessMetrics('api', { defaults: opts.enabled });
  if (!opts.enabled) return { metrics, upload: () => {} };
  const r = metrics.registry;
  const uploads = new Counter({ name: 'photopipe_http_uploads_total', help: 'Upload requests by HTTP status', labelNames: ['status'], registers: [r] });
  const sizes = new Histogram({
    name: 'photopipe_upload_bytes',
    help: 'Size of accepted upload bodies',
    buckets: [16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216, 33_554_432],
    registers: [r],
  });
  new Gauge({
    name: 'photopipe_redis_blob_bytes',
    help: 'Bytes of photos held in Redis (accepted and not final, renditions waiting for upload)',
    registers: [r],
    async collect() {
      this.set(await deps.blobs.heldBytes());
    },
  });
  // The three queue gauges read the same cached queue stats (QueueStats reads at most every 2 s).
  const read = () => deps.queues.all().catch(() => null);
  new Gauge({
    name: 'photopipe_queue_messages',
    help: 'Messages in a queue by state (ready, unacked)',
    labelNames: ['queue', 'state'],
    registers: [r],
    async collect() {
      for (const q of (await read()) ?? []) {
        this.set({ queue: q.name, state: 'ready' }, q.ready);
        if (q.unacked !== null) this.set({ queue: q.name, state: 'unacked' }, q.unacked);
      }
    },
  });
  new Gauge({
    name: 'photopipe_queue_consumers',
    help: 'Consumers of a queue',
    labelNames: ['queue'],
    registers: [r],
    async collect() {
      for (const q of (await read()) ?? []) this.set({ queue: q.name }, q.consumers);
    },
  });
  new Gauge({
    name: 'photopipe_dead_letters',
    help: 'Dead letters waiting in a stage DLQ',
    labelNames: ['stage'],
    registers: [r],
    async collect() {
      const stats = await read();
      if (!stats) return;
      for (const s of STAGES) this.set({ stage: s }, stats.find((q) => q.name === deps.broker.topology.dlq(s))?.ready ?? 0);
    },
  });
  return {
    metrics,
    upload: (status, bytes) => {
      uploads.inc({ status: String(status) });
      if (bytes !== null && status < 300) sizes.observe(bytes);
    },
  };
}
