import { isIP } from 'node:net';
import { blockedCategory, normaliseHost, type NetPolicy } from './address-policy.js';
import { blockedError, resolveAllowed, systemResolver, type Resolver } from './checked-lookup.js';
import { FetchError } from './fetch-errors.js';

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

/**
 * Parses with the WHATWG parser, which is also what undici uses, so the host checked here is the
 * host connected to. It already turns 2130706433, 0x7f.1, 0177.0.0.1 and 127.1 into 127.0.0.1
 * and [::ffff:127.0.0.1] into [::ffff:7f00:1]. `base` resolves a relative redirect Location.
 */
export function parseFetchUrl(input: string | URL, base?: URL): URL {
  let url: URL;
  try {
    url = new URL(input, base);
  } catch (err) {
    const where = base === undefined ? '' : ` (redirect from ${base.host})`;
    throw new FetchError('invalid_url', `not a valid URL${where}`, false, { host: base?.host, cause: err });
  }
  if (DEFAULT_PORTS[url.protocol] === undefined) {
    const scheme = url.protocol.replace(/:$/, '');
    throw new FetchError('bad_scheme', `only http and https URLs can be fetched, not ${scheme}:`, false, { host: url.host || undefined });
  }
  if (url.username !== '' || url.password !== '') {
    // Credentials in a URL end up in logs and in redirect targets; pass an Authorization header.
    throw new FetchError('invalid_url', `URLs with credentials are not accepted (${url.host})`, false, { host: url.host });
  }
  return url;
}

/**
 * The checks that need no DNS: the port, and the address when the host is an IP literal
 * (net.connect does not call lookup for those, so the connect-time check never sees them).
 */
export function checkUrlTarget(url: URL, policy: NetPolicy): void {
  const port = url.port === '' ? DEFAULT_PORTS[url.protocol] : Number(url.port);
  if (policy.allowedPorts !== undefined && (port === undefined || !policy.allowedPorts.includes(port))) {
    throw new FetchError('blocked_address', `refused to fetch: port ${port} of ${url.hostname} is not allowed`, false, { host: url.host });
  }
  const host = normaliseHost(url.hostname);
  if (isIP(host) !== 0) {
    const category = blockedCategory(host, host, policy);
    if (category !== null) throw blockedError(url.host, category, true);
  }
}

/**
 * Parses and checks a URL as a fetch would, resolving its host name once. For validating input
 * early (a webhook URL when it is registered, a batch's URLs when submitted) and as safeFetch's
 * pre-flight; the answer can change by the time of the connection, which is checked again.
 */
export async function assertUrlAllowed(input: string | URL, options: { policy?: NetPolicy; resolve?: Resolver } = {}): Promise<URL> {
  const policy = options.policy ?? {};
  const url = parseFetchUrl(input);
  checkUrlTarget(url, policy);
  await resolveAllowed(url.hostname, policy, options.resolve ?? systemResolver, url.host);
  return url;
}
