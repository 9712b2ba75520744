import { FetchError, safeFetchStream, type NetPolicy } from '../../shared/net/index.js';
import { SIGNATURE_HEADER, signatureHeader } from '../../webhooks/signature.js';

export interface SendRequest {
  url: string;
  body: string;
  secret: string;
  eventId: string;
  eventType: string;
  attempt: number;
}

export type SendOutcome =
  | { ok: true; statusCode: number; ms: number }
  /** `retry: false` when trying again cannot help (the URL itself is refused). */
  | { ok: false; statusCode: number | null; error: string; retry: boolean; ms: number };

/** Fetch errors that say the URL itself may not be fetched: no later attempt can succeed. */
const FINAL_CODES = new Set(['blocked_address', 'bad_scheme', 'invalid_url']);

/**
 * One delivery attempt: a signed POST through the SSRF guard (safeFetch: the address is checked as
 * the socket connects), within timeoutMs for the whole exchange, no redirects followed, the
 * answer's body never read. Every non-2xx answer and every transport failure is a failed attempt.
 */
export async function sendEvent(req: SendRequest, opts: { policy: NetPolicy; timeoutMs: number; signal?: AbortSignal; userAgent?: string }): Promise<SendOutcome> {
  const started = Date.now();
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': opts.userAgent ?? 'photopipe-webhooks/1',
    'photopipe-event-id': req.eventId,
    'photopipe-event-type': req.eventType,
    'photopipe-delivery-attempt': String(req.attempt),
    [SIGNATURE_HEADER.toLowerCase()]: signatureHeader(req.secret, req.body),
  };
  try {
    const res = await safeFetchStream(req.url, {
      method: 'POST',
      headers,
      body: req.body,
      policy: opts.policy,
      timeoutMs: opts.timeoutMs,
      maxRedirects: 0,
      maxBytes: 64 * 1024,
      accept: () => true,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    // The answer's body is of no interest: close it at once.
    res.body.on('error', () => {});
    res.body.destroy();
    const ms = Date.now() - started;
    if (res.status >= 200 && res.status < 300) return { ok: true, statusCode: res.status, ms };
    return { ok: false, statusCode: res.status, error: `the receiver answered ${res.status}`, retry: true, ms };
  } catch (err) {
    const ms = Date.now() - started;
    if (opts.signal?.aborted) throw err;
    if (err instanceof FetchError) {
      const error = err.code === 'too_many_redirects' ? 'the receiver answered with a redirect, which is not followed' : err.message;
      return { ok: false, statusCode: err.status ?? null, error, retry: !FINAL_CODES.has(err.code), ms };
    }
    return { ok: false, statusCode: null, error: 'the request failed', retry: true, ms };
  }
}
