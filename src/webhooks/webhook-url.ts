import type { Config } from '../shared/config.js';
import { assertUrlAllowed, FetchError, type NetPolicy, type Resolver } from '../shared/net/index.js';

/** Longest webhook or notify URL accepted. */
export const WEBHOOK_URL_MAX_CHARS = 2_048;

/** Where webhook deliveries may go: public addresses only, loopback too when FETCH_ALLOW_LOOPBACK is set (tests). */
export function webhookPolicy(config: Pick<Config, 'FETCH_ALLOW_LOOPBACK'>): NetPolicy {
  return { allowLoopback: config.FETCH_ALLOW_LOOPBACK };
}

/** A URL a tenant gave us for its events, refused with a reason it can act on. */
export class InvalidWebhookUrlError extends Error {
  override readonly name = 'InvalidWebhookUrlError';
}

/**
 * Checks a webhook URL when it is given (PUT /v1/webhook, an upload's notifyUrl): http or https, no
 * credentials, and a host that resolves to an address deliveries may reach (never private,
 * link-local or a cloud metadata service; loopback only when allowed). Delivery checks the address
 * again when it connects, so a DNS answer that changes later is still refused then.
 */
export async function validateWebhookUrl(input: unknown, policy: NetPolicy, resolve?: Resolver): Promise<string> {
  if (typeof input !== 'string' || input.trim() === '') throw new InvalidWebhookUrlError('expected an http(s) URL');
  if (input.length > WEBHOOK_URL_MAX_CHARS) throw new InvalidWebhookUrlError(`the URL is longer than ${WEBHOOK_URL_MAX_CHARS} characters`);
  try {
    const url = await assertUrlAllowed(input.trim(), { policy, ...(resolve ? { resolve } : {}) });
    return url.href;
  } catch (err) {
    if (err instanceof FetchError) throw new InvalidWebhookUrlError(err.message.replace(/^refused to fetch: /, 'refused: '));
    throw err;
  }
}
