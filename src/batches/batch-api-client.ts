import { z } from 'zod';
import { FetchError, safeFetch } from '../shared/net/index.js';
import type { FetchSetup } from './fetch-policy.js';

/**
 * The customer's batch API, as photopipe calls it (README "Batch ingestion" has the contract):
 *
 *   start  POST <endpoint>            Idempotency-Key: <batch>.<seq>, the customer's auth header,
 *          {"batchId","sequence","urls":[...],"callbackUrl"?,"callbackToken"?}
 *          -> 2xx {"jobId": "..."}; the same key again must answer the same job
 *   poll   GET <endpoint>/<jobId>     -> 200 {"status":"running"|"succeeded"|"failed","error"?}
 *
 * Every request goes through the SSRF-guarded fetch with the same policy as image downloads.
 */

export interface ApiTarget {
  endpoint: string;
  authName: string | null;
  authValue: string | null;
}

export interface StartRequest {
  batchId: string;
  sequence: number;
  urls: string[];
  callbackUrl?: string;
  callbackToken?: string;
}

/** The outcome of one start request. */
export type StartOutcome =
  | { kind: 'accepted'; jobId: string }
  /** The customer refused it for good (a 4xx other than 408/425/429, or an answer outside the contract). */
  | { kind: 'refused'; code: string; reason: string }
  /** No answer, or one that may change (5xx, 429, a timeout, a connection error): try again with the same key. */
  | { kind: 'retry'; code: string; reason: string; retryAfterMs?: number };

export type PollOutcome = { kind: 'running' } | { kind: 'finished'; status: 'succeeded' | 'failed'; error?: string } | { kind: 'error'; code: string; reason: string };

const startAnswer = z.object({ jobId: z.string().min(1).max(200) });
const pollAnswer = z.object({ status: z.enum(['running', 'succeeded', 'failed']), error: z.string().max(1000).optional() });

export class BatchApiClient {
  constructor(
    private readonly setup: FetchSetup,
    private readonly timeoutMs: number,
  ) {}

  private headers(t: ApiTarget): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json' };
    if (t.authName && t.authValue !== null) h[t.authName] = t.authValue;
    return h;
  }

  async start(t: ApiTarget, idempotencyKey: string, body: StartRequest, signal?: AbortSignal): Promise<StartOutcome> {
    let text: string;
    try {
      const res = await safeFetch(t.endpoint, {
        method: 'POST',
        headers: { ...this.headers(t), 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
        body: JSON.stringify(body),
        policy: this.setup.policy,
        resolve: this.setup.resolve,
        timeoutMs: this.timeoutMs,
        maxBytes: 64 * 1024,
        maxRedirects: 0,
        signal,
      });
      text = res.body.toString('utf8');
    } catch (err) {
      if (err instanceof FetchError) {
        return err.retryable ? { kind: 'retry', code: err.code, reason: err.message, retryAfterMs: err.retryAfterMs } : { kind: 'refused', code: err.code, reason: err.message };
      }
      throw err;
    }
    const parsed = startAnswer.safeParse(parseJson(text));
    if (!parsed.success) return { kind: 'refused', code: 'bad_answer', reason: 'the batch API accepted the call but answered without a jobId' };
    return { kind: 'accepted', jobId: parsed.data.jobId };
  }

  async poll(t: ApiTarget, jobId: string, signal?: AbortSignal): Promise<PollOutcome> {
    try {
      const res = await safeFetch(`${t.endpoint.replace(/\/$/, '')}/${encodeURIComponent(jobId)}`, {
        headers: this.headers(t),
        policy: this.setup.policy,
        resolve: this.setup.resolve,
        timeoutMs: this.timeoutMs,
        maxBytes: 64 * 1024,
        maxRedirects: 0,
        signal,
      });
      const parsed = pollAnswer.safeParse(parseJson(res.body.toString('utf8')));
      if (!parsed.success) return { kind: 'error', code: 'bad_answer', reason: 'the batch API answered a poll outside the contract' };
      if (parsed.data.status === 'running') return { kind: 'running' };
      return { kind: 'finished', status: parsed.data.status, error: parsed.data.error };
    } catch (err) {
      if (err instanceof FetchError) return { kind: 'error', code: err.code, reason: err.message };
      throw err;
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
