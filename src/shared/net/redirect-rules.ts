export interface OutgoingRequest {
  method: string;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: string | Uint8Array | undefined;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Credentials (and a Host set by the caller) belong to one origin: never sent to another. */
const ORIGIN_BOUND_HEADERS = ['authorization', 'proxy-authorization', 'cookie', 'host'];
const BODY_HEADERS = ['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location'];

export function isRedirect(status: number): boolean {
  return REDIRECT_STATUSES.has(status);
}

/**
 * The request to send to `to` after `status` from `from`, as browsers do (Fetch standard,
 * "HTTP-redirect fetch"): 303 turns anything but HEAD into a bodiless GET, 301/302 turn POST
 * into GET, 307/308 resend method and body. Credentials are dropped when the origin changes
 * (scheme, host or port), and stay dropped for later hops.
 */
export function redirectedRequest(prev: OutgoingRequest, status: number, from: URL, to: URL): OutgoingRequest {
  const headers = { ...prev.headers };
  let { method, body } = prev;
  if ((status === 303 && method !== 'HEAD') || ((status === 301 || status === 302) && method === 'POST')) {
    method = 'GET';
    body = undefined;
    for (const name of BODY_HEADERS) delete headers[name];
  }
  if (from.origin !== to.origin) {
    for (const name of ORIGIN_BOUND_HEADERS) delete headers[name];
  }
  return { method, headers, body };
}
