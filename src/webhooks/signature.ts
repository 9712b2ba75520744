import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Webhook signatures, the way Stripe signs its events: HMAC-SHA256 with the tenant's secret over
 * `<unix seconds>.<raw body>`, sent as `Photopipe-Signature: t=<unix seconds>,v1=<hex>`. The
 * timestamp is signed too, so a receiver can refuse old (replayed) requests; every attempt is
 * signed anew with its own time.
 */
export const SIGNATURE_HEADER = 'Photopipe-Signature';

export function signatureOf(secret: string, timestampSec: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestampSec}.${body}`).digest('hex');
}

export function signatureHeader(secret: string, body: string, nowMs = Date.now()): string {
  const t = Math.floor(nowMs / 1000);
  return `t=${t},v1=${signatureOf(secret, t, body)}`;
}

/**
 * What a receiver does (README "Webhooks" has the same in a few lines of Node): recompute the
 * HMAC over the raw body and compare in constant time; refuse a timestamp older than toleranceSec.
 */
export function verifySignature(header: string | undefined, body: string, secret: string, opts: { toleranceSec?: number; nowMs?: number } = {}): boolean {
  if (!header) return false;
  const parts = new Map<string, string[]>();
  for (const item of header.split(',')) {
    const at = item.indexOf('=');
    if (at < 1) continue;
    const key = item.slice(0, at).trim();
    parts.set(key, [...(parts.get(key) ?? []), item.slice(at + 1).trim()]);
  }
  const t = Number(parts.get('t')?.[0]);
  if (!Number.isSafeInteger(t)) return false;
  const age = Math.floor((opts.nowMs ?? Date.now()) / 1000) - t;
  if (Math.abs(age) > (opts.toleranceSec ?? 300)) return false;
  const want = Buffer.from(signatureOf(secret, t, body), 'hex');
  return (parts.get('v1') ?? []).some((v) => {
    const got = Buffer.from(v, 'hex');
    return got.length === want.length && timingSafeEqual(got, want);
  });
}
