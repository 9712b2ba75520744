import { LRUCache } from 'lru-cache';
import { defineServiceRole } from '../service-role.js';
import { ServiceConsumer } from '../../queues/service-consumer.js';
import { BATCH_DISPATCH, BATCH_PHOTOS, dispatchMessageSchema, type DispatchMessage } from '../../queues/batch-messages.js';
import { photoFinalEventSchema, type PhotoFinalEvent } from '../../queues/messages.js';
import { BatchRepo } from '../../db/batches/batch-repo.js';
import { TenantLoad } from '../../pipeline/tenant-load.js';
import { DispatchKicker } from '../../batches/dispatch-kicker.js';
import { Dispatcher } from '../../batches/dispatcher.js';
import { BatchApiClient } from '../../batches/batch-api-client.js';
import { fetchSetup } from '../../batches/fetch-policy.js';
import { PerKeySerial } from '../../batches/per-key-serial.js';

/**
 * batch-dispatch: the per-customer dispatcher. It takes wake-ups from batch.dispatch (a single
 * active consumer queue: one dispatcher process works, the others stand by and take over when it
 * goes), runs one pass per customer at a time (Dispatcher.tick), turns photo.final events of
 * customers with running batches into wake-ups, and sweeps every customer with a running batch
 * every BATCH_SWEEP_INTERVAL_MS so that a lost wake-up only costs time. Different customers' passes
 * run in parallel.
 */
export default defineServiceRole({
  description: 'hands ready batch images to each customer\'s batch API, one call in flight per customer',
  async start(deps) {
    const { config } = deps;
    const log = deps.log.child({ role: 'batch-dispatch' });
    const repo = new BatchRepo(deps.db);
    const kicker = new DispatchKicker(deps.broker, log);
    const dispatcher = new Dispatcher({
      config,
      repo,
      broker: deps.broker,
      api: new BatchApiClient(fetchSetup(config), config.BATCH_API_TIMEOUT_MS),
      kicker,
      tenantLoad: new TenantLoad(config, deps.redis, deps.photos.intake),
      log,
    });
    const serial = new PerKeySerial();
    const common = {
      broker: deps.broker,
      log,
      timeoutMs: config.BATCH_API_TIMEOUT_MS * 2 + 30_000,
      maxAttempts: config.MAX_ATTEMPTS,
      retryDelaysMs: config.RETRY_DELAYS_MS,
      retryJitter: config.RETRY_JITTER,
      crashLimit: 1_000, // a pass that crashes its process is retried: it only looks at the state
    };
    const ticks = new ServiceConsumer<DispatchMessage>({
      ...common,
      queue: BATCH_DISPATCH,
      workKey: BATCH_DISPATCH,
      schema: dispatchMessageSchema,
      // Passes of one customer are serialised and coalesced: wake-ups that arrive during a pass
      // run one more pass after it, not one each.
      handler: (msg) => serial.run(msg.tenantId, () => dispatcher.tick(msg.tenantId)),
      prefetch: 64,
    });
    // Whether a tenant has a running batch, remembered briefly: most photos are not a batch's.
    const active = new LRUCache<string, boolean>({ max: 10_000, ttl: 2_000 });
    const events = new ServiceConsumer<PhotoFinalEvent>({
      ...common,
      queue: BATCH_PHOTOS,
      workKey: null,
      schema: photoFinalEventSchema,
      handler: async (e) => {
        let has = active.get(e.tenantId);
        if (has === undefined) {
          has = await repo.hasRunningBatch(e.tenantId);
          active.set(e.tenantId, has);
        }
        if (has) kicker.kick(e.tenantId);
      },
      prefetch: 64,
    });
    const sweep = setInterval(() => {
      repo
        .activeTenants()
        .then((tenants) => Promise.all(tenants.map((t) => kicker.now(t))))
        .catch((err: Error) => log.warn({ err: err.message }, 'sweep failed'));
    }, config.BATCH_SWEEP_INTERVAL_MS);
    sweep.unref();
    ticks.start();
    events.start();
    return {
      async stop(graceMs) {
        clearInterval(sweep);
        await Promise.all([ticks.stop(graceMs), events.stop(graceMs)]);
        kicker.stop();
      },
    };
  },
});
