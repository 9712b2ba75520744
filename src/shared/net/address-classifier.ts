import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * What kind of destination an IP address is, for deciding whether a fetch may connect to it.
 * Only 'public' is reachable by default; address-policy.ts says which others a policy opens.
 * 'reserved' covers everything else that is not globally routable unicast: documentation and
 * benchmarking ranges, 240/4, IPv6 outside 2000::/3, deprecated forms (site-local fec0::/10,
 * IPv4-compatible ::a.b.c.d, Teredo), AS112, AMT, ORCHID and the like.
 */
export type AddressCategory =
  | 'public'
  | 'loopback'
  | 'private'
  | 'carrier_grade_nat'
  | 'link_local'
  | 'multicast'
  | 'unspecified'
  | 'broadcast'
  | 'reserved'
  | 'metadata';

/**
 * Cloud metadata and platform endpoints. Most sit in ranges that are blocked anyway; they are
 * listed so that no policy (allowPrivate, allowedHosts) can open them: 100.100.100.200 is in
 * CGNAT space, fd00:ec2::/32 addresses are unique-local, and Azure's 168.63.129.16 is public.
 */
const METADATA_ADDRESSES = [
  '169.254.169.254', // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, ...
  '169.254.170.2', // AWS ECS task metadata
  '169.254.170.23', // AWS EKS pod identity
  '169.254.0.23', // Tencent Cloud
  '100.100.100.200', // Alibaba Cloud
  '168.63.129.16', // Azure WireServer
  '192.0.0.192', // Oracle Cloud (classic)
  'fd00:ec2::254', // AWS IMDS over IPv6
  'fd00:ec2::23', // AWS EKS pod identity over IPv6
].map((a) => ipaddr.parse(a).toNormalizedString());

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');
const NAT64_WELL_KNOWN = ipaddr.parseCIDR('64:ff9b::/96');
const IPV4_COMPATIBLE = ipaddr.parseCIDR('::/96');

const V4_RANGES: Record<string, AddressCategory> = {
  unicast: 'public',
  loopback: 'loopback',
  private: 'private',
  carrierGradeNat: 'carrier_grade_nat',
  linkLocal: 'link_local',
  multicast: 'multicast',
  unspecified: 'unspecified',
  broadcast: 'broadcast',
};

const V6_RANGES: Record<string, AddressCategory> = {
  loopback: 'loopback',
  uniqueLocal: 'private',
  deprecatedSiteLocal: 'private',
  linkLocal: 'link_local',
  multicast: 'multicast',
  unspecified: 'unspecified',
};

/** Throws TypeError when `address` is not a plain IPv4 or IPv6 address (no brackets). */
export function classifyAddress(address: string): AddressCategory {
  const ip = parseAddress(address);
  return ip.kind() === 'ipv4' ? classifyV4(ip as ipaddr.IPv4) : classifyV6(ip as ipaddr.IPv6);
}

/** Parses as the kernel reads it. Throws TypeError when not a plain IPv4 or IPv6 address. */
export function parseAddress(address: string): ipaddr.IPv4 | ipaddr.IPv6 {
  const family = isIP(address);
  if (family === 0) throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
  return family === 4 ? ipaddr.IPv4.parse(address) : ipaddr.IPv6.parse(canonicalV6(address));
}

/**
 * ipaddr.js reads "::a.b.c.d" as ::ffff:a.b.c.d, where the kernel and the URL parser read the
 * IPv4-compatible ::a.b.c.d: rewrite the address in hex, as the URL parser does, before parsing.
 * A zone ("%eth0") only matters for link-local addresses, which stay link-local without it.
 */
function canonicalV6(address: string): string {
  const bare = address.split('%')[0] ?? address;
  return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
}

function classifyV4(ip: ipaddr.IPv4): AddressCategory {
  if (METADATA_ADDRESSES.includes(ip.toNormalizedString())) return 'metadata';
  return V4_RANGES[ip.range()] ?? 'reserved';
}

function classifyV6(ip: ipaddr.IPv6): AddressCategory {
  if (METADATA_ADDRESSES.includes(ip.toNormalizedString())) return 'metadata';
  const range = ip.range();
  const named = V6_RANGES[range];
  if (named) return named;

  // IPv4 carried inside IPv6: judged by the IPv4 address, which is where the packets end up.
  if (range === 'ipv4Mapped') return classifyV4(ip.toIPv4Address());
  if (range === 'rfc6145' || ip.match(NAT64_WELL_KNOWN)) return classifyV4(lowV4(ip));
  if (range === '6to4') return classifyV4(new ipaddr.IPv4(bytesOf([ip.parts[1], ip.parts[2]])));
  // IPv4-compatible ::a.b.c.d is deprecated (RFC 4291) and not routed as the IPv4 address it
  // spells: never a destination, whatever it embeds (::127.0.0.1 is not loopback to the kernel).
  if (ip.match(IPV4_COMPATIBLE)) return 'reserved';
  // Everything else ipaddr.js names (Teredo, local-use NAT64 64:ff9b:1::/48, documentation,
  // discard, ORCHID, ...) is not a plain global destination; 'unicast' outside 2000::/3 is
  // unallocated space.
  if (range === 'unicast' && ip.match(GLOBAL_UNICAST_V6)) return 'public';
  return 'reserved';
}

function lowV4(ip: ipaddr.IPv6): ipaddr.IPv4 {
  return new ipaddr.IPv4(bytesOf([ip.parts[6], ip.parts[7]]));
}

function bytesOf(words: (number | undefined)[]): number[] {
  return words.flatMap((w) => [((w ?? 0) >> 8) & 0xff, (w ?? 0) & 0xff]);
}

const DESCRIPTIONS: Record<AddressCategory, string> = {
  public: 'a public address',
  loopback: 'a loopback address',
  private: 'a private-network address',
  carrier_grade_nat: 'a carrier-grade NAT (shared) address',
  link_local: 'a link-local address',
  multicast: 'a multicast address',
  unspecified: 'the unspecified address',
  broadcast: 'the broadcast address',
  reserved: 'a reserved, documentation or non-routable address',
  metadata: 'a cloud metadata address',
};

/** "a loopback address", for messages. */
export function describeCategory(category: AddressCategory): string {
  return DESCRIPTIONS[category];
}
