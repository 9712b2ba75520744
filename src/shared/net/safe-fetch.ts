import { Transform, type Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import { assertValidPolicy, type NetPolicy } from './address-policy.js';
import { createCheckedLookup, resolveAllowed, systemResolver, type Resolver } from './checked-lookup.js';
import { FetchError, httpStatusError, transportError } from './fetch-errors.js';
import { isRedirect, redirectedRequest, type OutgoingRequest } from './redirect-rules.js';
import { checkUrlTarget, parseFetchUrl } from './url-guard.js';

export type ResponseHeaders = Record<string, string | string[] | undefined>;

export interface SafeFetchOptions {
  method?: string;
  headers?: Record<string, string>;
  /** Kept in memory so that a 307/308 redirect can send it again. */
  body?: string | Uint8Array;
  /** Default {}: public addresses only (address-policy.ts). */
  policy?: NetPolicy;
  /** For the whole exchange: every hop, and the body until its last byte is read. */
  timeoutMs?: number;
  maxRedirects?: number;
  /** Bytes on the wire (nothing is decompressed). */
  maxBytes?: number;
  /** The caller's cancellation: the fetch then fails with the signal's reason, not a FetchError. */
  signal?: AbortSignal;
  /** Which final statuses are a success; the others fail with 'http_status'. Default: 2xx. */
  accept?: (status: number, headers: ResponseHeaders) => boolean;
  /** Default: the system resolver. Tests inject one. */
  resolve?: Resolver;
}

export const FETCH_DEFAULTS = { timeoutMs: 30_000, maxRedirects: 5, maxBytes: 50 * 1024 * 1024 } as const;

export interface SafeResponseHead {
  status: number;
  headers: ResponseHeaders;
  /** The URL that answered, after redirects. */
  finalUrl: string;
  /** How many redirects were followed. */
  redirects: number;
}

export interface SafeResponse extends SafeResponseHead {
  body: Buffer;
}

export interface SafeStreamResponse extends SafeResponseHead {
  /** Read it to the end or destroy it: it holds a connection until then (or until the timeout). */
  body: Readable;
}

/** Fetches into memory, at most maxBytes. See safeFetchStream for the rules. */
export async function safeFetch(url: string | URL, options: SafeFetchOptions = {}): Promise<SafeResponse> {
  const { body, ...head } = await safeFetchStream(url, options);
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return { ...head, body: Buffer.concat(chunks) };
}

/**
 * An HTTP(S) request that cannot be pointed at this machine, its network or a cloud metadata
 * service (unless the policy says so). Resolves once the final response's headers are in; the
 * body streams, and fails with 'too_large' past maxBytes and 'timeout' past timeoutMs.
 *
 * Every hop's URL is checked (scheme, port, IP literal, and its host name resolved once so that
 * a refusal comes early and clearly); the address actually connected to is checked again by the
 * connection's own lookup, so DNS rebinding between the two is refused as well.
 */
export async function safeFetchStream(input: string | URL, options: SafeFetchOptions = {}): Promise<SafeStreamResponse> {
  const policy = options.policy ?? {};
  assertValidPolicy(policy);
  const resolve = options.resolve ?? systemResolver;
  const timeoutMs = options.timeoutMs ?? FETCH_DEFAULTS.timeoutMs;
  const maxRedirects = options.maxRedirects ?? FETCH_DEFAULTS.maxRedirects;
  const maxBytes = options.maxBytes ?? FETCH_DEFAULTS.maxBytes;
  const accept = options.accept ?? ((status: number) => status >= 200 && status < 300);
  const callerSignal = options.signal;
  callerSignal?.throwIfAborted();

  // One agent per exchange: its lookup carries this exchange's policy, and nothing outlives it.
  const agent = new Agent({ connect: { lookup: createCheckedLookup(policy, resolve) } });
  const controller = new AbortController();
  let host = '';
  let body: Transform | undefined;
  let timedOut = false;

  const stop = (reason: unknown) => {
    body?.destroy(reason as Error);
    controller.abort(reason);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    stop(timeoutError(host, timeoutMs));
  }, timeoutMs);
  const onCallerAbort = () => stop(callerSignal?.reason);
  callerSignal?.addEventListener('abort', onCallerAbort, { once: true });

  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    clearTimeout(timer);
    callerSignal?.removeEventListener('abort', onCallerAbort);
    agent.destroy().catch(() => {});
  };
  const normalise = (err: unknown): unknown => {
    if (callerSignal?.aborted === true) return callerSignal.reason;
    if (err instanceof FetchError) return err;
    if (timedOut) return timeoutError(host, timeoutMs);
    return transportError(host, err) ?? err;
  };

  try {
    let url = parseFetchUrl(input);
    const firstHost = url.host;
    let outgoing: OutgoingRequest = {
      method: (options.method ?? 'GET').toUpperCase(),
      headers: lowerCaseNames(options.headers ?? {}),
      body: options.body,
    };
    for (let redirects = 0; ; redirects += 1) {
      host = url.host;
      checkUrlTarget(url, policy);
      await untilAborted(resolveAllowed(url.hostname, policy, resolve, url.host), controller.signal);
      const res = await request(url, {
        dispatcher: agent,
        method: outgoing.method as Dispatcher.HttpMethod,
        headers: outgoing.headers,
        body: outgoing.body,
        signal: controller.signal,
      });
      const location = firstValue(res.headers.location);
      if (isRedirect(res.statusCode) && location !== undefined) {
        discard(res.body);
        if (redirects >= maxRedirects) {
          throw new FetchError('too_many_redirects', `more than ${maxRedirects} redirects, starting at ${firstHost}`, false, { host: firstHost });
        }
        const next = parseFetchUrl(location, url);
        outgoing = redirectedRequest(outgoing, res.statusCode, url, next);
        url = next;
        continue;
      }
      if (!accept(res.statusCode, res.headers)) {
        discard(res.body);
        throw httpStatusError(host, res.statusCode, firstValue(res.headers['retry-after']));
      }
      if (Number(firstValue(res.headers['content-length'])) > maxBytes) {
        discard(res.body);
        throw tooLargeError(host, maxBytes);
      }
      body = limitBytes(res.body, maxBytes, () => tooLargeError(host, maxBytes), normalise, release);
      return { status: res.statusCode, headers: res.headers, finalUrl: url.href, redirects, body };
    }
  } catch (err) {
    release();
    throw normalise(err);
  }
}

/** Passes `source` through, failing once more than maxBytes went by; `done` runs once at close. */
function limitBytes(source: Readable, maxBytes: number, tooLarge: () => Error, normalise: (err: unknown) => unknown, done: () => void): Transform {
  let received = 0;
  const limited = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > maxBytes) callback(tooLarge());
      else callback(null, chunk);
    },
  });
  source.on('error', (err) => limited.destroy(normalise(err) as Error));
  // Closed by the end of the body, an error, the timeout, or the consumer giving up early.
  limited.on('close', () => {
    source.destroy();
    done();
  });
  source.pipe(limited);
  return limited;
}

/** Drops a body not wanted; undici reports destroying an unread body as an 'error' event. */
function discard(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}

function timeoutError(host: string, timeoutMs: number): FetchError {
  return new FetchError('timeout', `no complete response from ${host} within ${timeoutMs} ms`, true, { host });
}

function tooLargeError(host: string, maxBytes: number): FetchError {
  return new FetchError('too_large', `the response from ${host} is larger than the limit of ${maxBytes} bytes`, false, { host });
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err as Error);
      },
    );
  });
}

function lowerCaseNames(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
