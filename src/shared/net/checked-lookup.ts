import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { describeCategory, type AddressCategory } from './address-classifier.js';
import { blockedCategory, normaliseHost, type NetPolicy } from './address-policy.js';
import { dnsError, FetchError } from './fetch-errors.js';

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Host name -> addresses. Injected in tests to play DNS tricks without a DNS server. */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

/** The operating system's resolver (getaddrinfo, so /etc/hosts counts), every address. */
export const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/** RFC 6761: these names are loopback whatever a resolver says. */
function isLocalhostName(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost');
}

export function blockedError(host: string, category: AddressCategory, literal: boolean): FetchError {
  const what = literal ? `${host} is ${describeCategory(category)}` : `${host} resolves to ${describeCategory(category)}`;
  return new FetchError('blocked_address', `refused to fetch: ${what}`, false, { host });
}

/**
 * Resolves `hostname` and keeps the addresses the policy allows; throws 'blocked_address' when
 * none is left, 'dns_failed' when resolution fails. `displayHost` (the URL's host, with port)
 * is what messages name.
 */
export async function resolveAllowed(
  hostname: string,
  policy: NetPolicy,
  resolve: Resolver,
  displayHost = hostname,
): Promise<ResolvedAddress[]> {
  const host = normaliseHost(hostname);
  const literal = isIP(host);
  if (literal !== 0) {
    const category = blockedCategory(host, host, policy);
    if (category !== null) throw blockedError(displayHost, category, true);
    return [{ address: host, family: literal }];
  }
  if (isLocalhostName(host)) {
    const category = blockedCategory('127.0.0.1', host, policy);
    if (category !== null) throw blockedError(displayHost, category, false);
  }
  let answers: ResolvedAddress[];
  try {
    answers = await resolve(host);
  } catch (err) {
    throw dnsError(displayHost, err);
  }
  const allowed: ResolvedAddress[] = [];
  let firstBlocked: AddressCategory | null = null;
  for (const answer of answers) {
    // A resolver that answers something other than an address is treated as a blocked answer.
    const category = isIP(answer.address) === 0 ? 'reserved' : blockedCategory(answer.address, host, policy);
    if (category === null) allowed.push({ address: answer.address, family: isIP(answer.address) });
    else firstBlocked ??= category;
  }
  if (allowed.length > 0) return allowed;
  if (firstBlocked !== null) throw blockedError(displayHost, firstBlocked, false);
  throw dnsError(displayHost, Object.assign(new Error('no addresses'), { code: 'ENODATA' }));
}

/**
 * A `lookup` for net/tls.connect (undici's `connect` options) that resolves, drops every
 * address the policy refuses, and hands the socket only allowed ones: the check happens on the
 * address actually connected to, so a DNS answer that changes between a pre-check and the
 * connection (rebinding) cannot get through. net.connect skips lookup for IP literals: those are
 * checked before the request (url-guard.ts).
 */
export function createCheckedLookup(policy: NetPolicy, resolve: Resolver = systemResolver): LookupFunction {
  return (hostname, options, callback) => {
    resolveAllowed(hostname, policy, resolve).then(
      (addresses) => {
        const family = options.family === 4 || options.family === 'IPv4' ? 4 : options.family === 6 || options.family === 'IPv6' ? 6 : 0;
        const usable = family === 0 ? addresses : addresses.filter((a) => a.family === family);
        const first = usable[0];
        if (first === undefined) {
          callback(dnsError(hostname, Object.assign(new Error(`no IPv${family} address`), { code: 'ENODATA' })), '');
        } else if (options.all === true) {
          callback(null, usable);
        } else {
          callback(null, first.address, first.family);
        }
      },
      (err: FetchError) => callback(err, ''),
    );
  };
}
