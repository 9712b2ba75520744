import ipaddr from 'ipaddr.js';
import { isIP } from 'node:net';
import { classifyAddress, parseAddress, type AddressCategory } from './address-classifier.js';

/**
 * Which destinations an outbound fetch may reach. The default ({}) is public addresses only.
 *  - allowLoopback: 127/8 and ::1 (tests, a sidecar on the same host).
 *  - allowPrivate: RFC 1918, fc00::/7 (unique local), fec0::/10, and CGNAT 100.64/10.
 *  - allowedHosts: exceptions for named destinations that may be loopback, private or CGNAT
 *    even when the two flags are off: a host name (exact, case-insensitive; matched against the
 *    URL's host name, so every address it resolves to is accepted), an IP address, or a CIDR
 *    range matched against the resolved address ("10.20.0.0/16").
 *  - allowedPorts: when set, only these ports (after defaulting 80/443); otherwise any port.
 * Never allowed, whatever the policy: link-local, multicast, unspecified, broadcast, reserved and
 * documentation ranges, and cloud metadata addresses (address-classifier.ts).
 */
export interface NetPolicy {
  allowLoopback?: boolean;
  allowPrivate?: boolean;
  allowedHosts?: string[];
  allowedPorts?: number[];
}

const OPENABLE: ReadonlySet<AddressCategory> = new Set(['loopback', 'private', 'carrier_grade_nat']);

/** Throws TypeError for an entry that can never match (a typo in configuration). */
export function assertValidPolicy(policy: NetPolicy): void {
  for (const entry of policy.allowedHosts ?? []) {
    if (entry.includes('/') ? !ipaddr.isValidCIDR(entry) : normaliseHost(entry) === '') {
      throw new TypeError(`allowedHosts: ${JSON.stringify(entry)} is neither a host name, an IP address nor a CIDR range`);
    }
  }
  for (const port of policy.allowedPorts ?? []) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`allowedPorts: ${port} is not a TCP port`);
  }
}

/**
 * The category that forbids connecting to `address` for a URL whose host name is `hostname`,
 * or null when the connection is allowed.
 */
export function blockedCategory(address: string, hostname: string, policy: NetPolicy): AddressCategory | null {
  const category = classifyAddress(address);
  if (category === 'public') return null;
  if (!OPENABLE.has(category)) return category;
  if (isListed(hostname, address, policy)) return null;
  if (category === 'loopback') return policy.allowLoopback === true ? null : category;
  return policy.allowPrivate === true ? null : category;
}

/** Lower case, no brackets around IPv6, no trailing dot. */
export function normaliseHost(host: string): string {
  const h = host.trim().toLowerCase();
  const bare = h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
  return bare.endsWith('.') ? bare.slice(0, -1) : bare;
}

function isListed(hostname: string, address: string, policy: NetPolicy): boolean {
  const entries = policy.allowedHosts;
  if (entries === undefined || entries.length === 0) return false;
  const host = normaliseHost(hostname);
  const ip = unmapped(parseAddress(address));
  return entries.some((entry) => {
    if (entry.includes('/')) {
      if (!ipaddr.isValidCIDR(entry)) return false;
      const [net, bits] = ipaddr.parseCIDR(entry);
      return net.kind() === ip.kind() && ip.match(net, bits);
    }
    const name = normaliseHost(entry);
    if (isIP(name) !== 0) return unmapped(parseAddress(name)).toNormalizedString() === ip.toNormalizedString();
    return name === host;
  });
}

/** ::ffff:10.0.0.1 is 10.0.0.1 for matching against entries. */
function unmapped(ip: ipaddr.IPv4 | ipaddr.IPv6): ipaddr.IPv4 | ipaddr.IPv6 {
  return ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress() ? (ip as ipaddr.IPv6).toIPv4Address() : ip;
}
