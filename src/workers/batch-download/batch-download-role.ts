import { defineServiceRole } from '../service-role.js';
import { ServiceConsumer } from '../../queues/service-consumer.js';
import { BATCH_DOWNLOAD, downloadMessageSchema, type DownloadMessage } from '../../queues/batch-messages.js';
import { BatchRepo } from '../../db/batches/batch-repo.js';
import { TenantLoad } from '../../pipeline/tenant-load.js';
import { DispatchKicker } from '../../batches/dispatch-kicker.js';
import { downloadItem, failDownload } from '../../batches/download-item.js';
import { fetchSetup } from '../../batches/fetch-policy.js';

/**
 * batch-download: downloads the URLs of batches (network-bound: BATCH_DOWNLOAD_CONCURRENCY at
 * once per process) and accepts each image as a batch photo in the bulk lane. Its queue is fed
 * by the dispatcher a window at a time, so the bytes waiting in Redis stay bounded.
 */
export default defineServiceRole({
  description: 'downloads batch URLs (SSRF-guarded) into the pipeline as bulk batch photos',
  async start(deps) {
    const { config } = deps;
    const repo = new BatchRepo(deps.db);
    const tenantLoad = new TenantLoad(config, deps.redis, deps.photos.intake);
    const kicker = new DispatchKicker(deps.broker, deps.log);
    const d = {
      config,
      repo,
      tenantLoad,
      fetch: fetchSetup(config),
      kick: (t: string) => kicker.kick(t),
      accept: { config, blobs: deps.blobs, intake: deps.photos.intake, broker: deps.broker, log: deps.log },
    };
    const consumer = new ServiceConsumer<DownloadMessage>({
      broker: deps.broker,
      log: deps.log.child({ role: 'batch-download' }),
      queue: BATCH_DOWNLOAD,
      workKey: BATCH_DOWNLOAD,
      schema: downloadMessageSchema,
      handler: (msg, ctx) => downloadItem(d, msg, ctx),
      onGiveUp: (msg, err) => failDownload(d, msg, err),
      prefetch: config.BATCH_DOWNLOAD_CONCURRENCY,
      // The fetch has its own time limit; this one also covers accepting the bytes.
      timeoutMs: config.BATCH_DOWNLOAD_TIMEOUT_MS + 15_000,
      maxAttempts: config.BATCH_DOWNLOAD_MAX_ATTEMPTS,
      retryDelaysMs: config.RETRY_DELAYS_MS,
      retryJitter: config.RETRY_JITTER,
      crashLimit: config.CRASH_REDELIVERY_LIMIT,
    });
    consumer.start();
    return {
      async stop(graceMs) {
        await consumer.stop(graceMs);
        kicker.stop();
      },
    };
  },
});
