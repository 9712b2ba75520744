import { defineServiceRole } from '../service-role.js';
import { WebhookRepo } from '../../db/webhook-repo.js';
import { WebhookDeliveryRepo } from '../../db/webhook-delivery-repo.js';
import { WebhookDispatcher } from './webhook-dispatcher.js';

/**
 * `photopipe worker --role webhook`: delivers photo.final events to the tenants' webhooks (and to
 * the notifyUrl an upload named), signed, at least once, with retries for about a day. Consumes
 * `<prefix>.webhook` (SERVICE_QUEUES), which gets every photo.final event and the role's own retries.
 */
export default defineServiceRole({
  description: 'webhook delivery: signed photo.final events to tenants, with retries',
  async start(deps) {
    const dispatcher = new WebhookDispatcher({
      config: deps.config,
      broker: deps.broker,
      log: deps.log,
      photos: deps.photos,
      webhooks: new WebhookRepo(deps.db),
      deliveries: new WebhookDeliveryRepo(deps.db),
    });
    dispatcher.start();
    deps.log.info({ queue: deps.broker.topology.serviceQueue('webhook'), concurrency: deps.config.WEBHOOK_CONCURRENCY }, 'webhook delivery started');
    return { stop: (graceMs) => dispatcher.stop(graceMs) };
  },
});
