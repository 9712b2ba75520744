import { z } from 'zod';

/** The one message shape every stage consumes: which photo, whose, and where its bytes are. Never the bytes. */
export const stageMessageSchema = z.object({
  v: z.literal(1),
  photoId: z.uuid(),
  tenantId: z.string().min(1).max(200),
  rawKey: z.string().min(1).max(500),
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
