import { z } from 'zod';

/**
 * The one message shape every stage consumes: which photo and whose. Never the bytes, and nothing
 * about where they came from: a stage finds a photo's blobs by its id. `rawKey` is written for
 * readers of older versions and ignored.
 */
export const stageMessageSchema = z.object({
  v: z.literal(1),
  photoId: z.uuid(),
  tenantId: z.string().min(1).max(200),
  rawKey: z.string().min(1).max(500).optional(),
  /** Bulk work (batches, re-geocoding, a tenant's large backlog) travels in the bulk lane; absent = interactive. */
  lane: z.enum(['interactive', 'bulk']).optional(),
  /** The correlation id set when the photo was accepted (X-Correlation-Id): every log line about it carries it. */
  cid: z.string().min(1).max(100).optional(),
  /** Re-geocoding with a given provider (photopipe places regeocode --provider); absent = GEOCODER. */
  geocoder: z.enum(['offline', 'geonames']).optional(),
});
export type StageMessage = z.infer<typeof stageMessageSchema>;

/** Headers that travel with a message through retries and into the dead-letter queue. */
export const H = {
  attempt: 'x-attempt',
  firstFailureAt: 'x-first-failure-at',
  lastFailureAt: 'x-last-failure-at',
  lastError: 'x-last-error',
  stage: 'x-stage',
  errorClass: 'x-error-class',
  errorCode: 'x-error-code',
  reason: 'x-reason',
  attempts: 'x-attempts',
  originalRoutingKey: 'x-original-routing-key',
  deadLetteredAt: 'x-dead-lettered-at',
  /** Times the message was deferred (rate limits): never counted as attempts. */
  deferrals: 'x-deferrals',
} as const;

export function encodeMessage(msg: StageMessage): Buffer {
  return Buffer.from(JSON.stringify(msg));
}

export type DecodeResult = { ok: true; message: StageMessage } | { ok: false; reason: string };

export function decodeMessage(content: Buffer): DecodeResult {
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed message: body is not valid JSON' };
  }
  const parsed = stageMessageSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    return { ok: false, reason: `malformed message: ${issues}` };
  }
  return { ok: true, message: parsed.data };
}

/** amqplib types message properties as `any`: read the ones we use as what they are. */
export function messageIdOf(msg: { properties: { messageId?: unknown } }): string | undefined {
  const id: unknown = msg.properties.messageId;
  return typeof id === 'string' ? id : undefined;
}

export function contentTypeOf(msg: { properties: { contentType?: unknown } }): string | undefined {
  const t: unknown = msg.properties.contentType;
  return typeof t === 'string' ? t : undefined;
}

/**
 * A photo reached a final state (complete, duplicate or failed): published on the events exchange
 * with routing key `photo.final.<status>`, at least once (a redelivered last stage publishes it
 * again), so consumers (webhooks, batches) drop repeats by photo id.
 */
export const photoFinalEventSchema = z.object({
  v: z.literal(1),
  type: z.literal('photo.final'),
  photoId: z.uuid(),
  tenantId: z.string().min(1).max(200),
  status: z.enum(['complete', 'duplicate', 'failed']),
  at: z.string(),
});
export type PhotoFinalEvent = z.infer<typeof photoFinalEventSchema>;

/**
 * The webhook role's own messages, on routing key `webhook` (and through the delay queues): a
 * delivery to attempt when it is due, or an event whose handling failed and waits to be tried again.
 */
export const webhookWorkSchema = z.discriminatedUnion('type', [
  z.object({ v: z.literal(1), type: z.literal('webhook.delivery'), deliveryId: z.uuid() }),
  z.object({ v: z.literal(1), type: z.literal('webhook.event'), event: photoFinalEventSchema }),
]);
export type WebhookWork = z.infer<typeof webhookWorkSchema>;
