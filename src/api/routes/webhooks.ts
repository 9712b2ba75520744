import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { HttpError } from '../../shared/errors.js';
import { DELIVERY_STATES, type Delivery } from '../../db/webhook-delivery-repo.js';
import { InvalidWebhookUrlError, validateWebhookUrl, webhookPolicy } from '../../webhooks/webhook-url.js';
import { SIGNATURE_HEADER } from '../../webhooks/signature.js';
import { intParam, optionalEnumParam, queryError } from '../query.js';
import { tenantOf } from '../route-auth.js';
import type { ApiDeps } from '../api-deps.js';

const putBody = z.object({ url: z.unknown() });
const deliveriesQuery = z.object({ limit: intParam(1, 100, 20), state: optionalEnumParam(DELIVERY_STATES) });

/** A signing secret: 32 random bytes, prefixed so that it is recognisable in a secret store. */
function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

function deliveryView(d: Delivery) {
  return {
    id: d.id,
    eventId: d.eventId,
    eventType: d.eventType,
    photoId: d.photoId,
    photoStatus: d.photoStatus,
    target: d.target,
    url: d.url,
    state: d.state,
    attempts: d.attempts,
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    nextAttemptAt: d.state === 'pending' ? (d.nextAttemptAt?.toISOString() ?? null) : null,
    createdAt: d.createdAt.toISOString(),
    updatedAt: d.updatedAt.toISOString(),
    deliveredAt: d.deliveredAt?.toISOString() ?? null,
  };
}

/**
 * A tenant's webhook (one per tenant): where its photos' final events are POSTed, signed with a
 * secret that is shown once, when the webhook is registered; and the latest deliveries.
 */
export function registerWebhookRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const policy = webhookPolicy(deps.config);

  app.put('/v1/webhook', { config: { auth: 'tenant' } }, async (req, reply) => {
    const tenantId = tenantOf(req);
    const parsed = putBody.safeParse(req.body);
    if (!parsed.success) throw new HttpError(400, 'invalid_body', 'send {"url": "https://..."}');
    let url: string;
    try {
      url = await validateWebhookUrl(parsed.data.url, policy);
    } catch (err) {
      if (err instanceof InvalidWebhookUrlError) throw new HttpError(400, 'invalid_webhook_url', `url: ${err.message}`);
      throw err;
    }
    // Every registration makes a new secret: shown here only, never again.
    const { webhook, created } = await deps.webhooks.put(tenantId, url, newSecret());
    return reply.code(created ? 201 : 200).send({
      url: webhook.url,
      secret: webhook.secret,
      signatureHeader: SIGNATURE_HEADER,
      createdAt: webhook.createdAt.toISOString(),
      updatedAt: webhook.updatedAt.toISOString(),
    });
  });

  app.get('/v1/webhook', { config: { auth: 'tenant' } }, async (req) => {
    const webhook = await deps.webhooks.get(tenantOf(req));
    if (!webhook) throw new HttpError(404, 'not_found', 'no webhook registered (PUT /v1/webhook)');
    return { url: webhook.url, createdAt: webhook.createdAt.toISOString(), updatedAt: webhook.updatedAt.toISOString() };
  });

  app.delete('/v1/webhook', { config: { auth: 'tenant', bodyless: true } }, async (req, reply) => {
    if (!(await deps.webhooks.delete(tenantOf(req)))) throw new HttpError(404, 'not_found', 'no webhook registered');
    return reply.code(204).send();
  });

  app.get('/v1/webhook/deliveries', { config: { auth: 'tenant' } }, async (req) => {
    const parsed = deliveriesQuery.safeParse(req.query);
    if (!parsed.success) throw queryError('invalid_query', parsed.error);
    const items = await deps.deliveries.latest(tenantOf(req), { limit: parsed.data.limit, ...(parsed.data.state ? { state: parsed.data.state } : {}) });
    return { items: items.map(deliveryView) };
  });
}
