import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classifyAddress, type AddressCategory } from '../../src/shared/net/address-classifier.js';
import { blockedCategory } from '../../src/shared/net/address-policy.js';

/** The pure classifier: one row per address, the category it must get. */
const CASES: [string, AddressCategory][] = [
  // IPv4
  ['8.8.8.8', 'public'],
  ['93.184.215.14', 'public'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['10.0.0.1', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['172.32.0.1', 'public'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'carrier_grade_nat'],
  ['100.127.255.255', 'carrier_grade_nat'],
  ['100.128.0.1', 'public'],
  ['169.254.1.1', 'link_local'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['255.255.255.255', 'broadcast'],
  ['240.0.0.1', 'reserved'],
  ['192.0.2.1', 'reserved'], // TEST-NET-1
  ['198.51.100.7', 'reserved'], // TEST-NET-2
  ['203.0.113.9', 'reserved'], // TEST-NET-3
  ['198.18.0.1', 'reserved'], // benchmarking
  ['192.0.0.8', 'reserved'], // IETF protocol assignments
  // cloud metadata
  ['169.254.169.254', 'metadata'],
  ['169.254.170.2', 'metadata'],
  ['100.100.100.200', 'metadata'],
  ['168.63.129.16', 'metadata'],
  ['fd00:ec2::254', 'metadata'],
  ['::ffff:169.254.169.254', 'metadata'],
  // IPv6
  ['2606:4700:4700::1111', 'public'],
  ['::1', 'loopback'],
  ['::', 'unspecified'],
  ['fc00::1', 'private'],
  ['fd12:3456::1', 'private'],
  ['fec0::1', 'private'], // deprecated site-local
  ['fe80::1', 'link_local'],
  ['ff02::1', 'multicast'],
  ['2001:db8::1', 'reserved'], // documentation
  ['3fff::1', 'reserved'], // documentation (RFC 9637)
  ['100::1', 'reserved'], // discard
  ['2001::1', 'reserved'], // Teredo
  ['4000::1', 'reserved'], // outside 2000::/3
  ['64:ff9b:1::a00:1', 'reserved'], // local-use NAT64
  // IPv4 inside IPv6
  ['::ffff:127.0.0.1', 'loopback'],
  ['::ffff:7f00:1', 'loopback'],
  ['::ffff:10.0.0.1', 'private'],
  ['::ffff:8.8.8.8', 'public'],
  ['::ffff:0:7f00:1', 'loopback'], // IPv4-translated (RFC 6145)
  ['64:ff9b::10.0.0.1', 'private'], // NAT64 well-known prefix
  ['64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::808:808', 'public'],
  ['2002:a00:1::', 'private'], // 6to4 of 10.0.0.1
  ['2002:7f00:1::1', 'loopback'], // 6to4 of 127.0.0.1
  ['2002:a9fe:a9fe::', 'metadata'], // 6to4 of 169.254.169.254
  ['2002:808:808::1', 'public'],
  ['::127.0.0.1', 'reserved'], // IPv4-compatible (deprecated): the kernel does not route it as 127.0.0.1
  ['::7f00:1', 'reserved'],
  ['::10.0.0.1', 'reserved'],
  ['::8.8.8.8', 'reserved'], // ipaddr.js alone would read this as ::ffff:8.8.8.8
];

describe('address classifier', () => {
  for (const [address, expected] of CASES) {
    it(`${address} is ${expected}`, () => {
      assert.equal(classifyAddress(address), expected);
    });
  }

  it('refuses what is not a plain IP address (URL forms are normalised before it)', () => {
    for (const bad of ['localhost', '[::1]', '0x7f.1', '2130706433', '127.1', '']) {
      assert.throws(() => classifyAddress(bad), TypeError, bad);
    }
  });
});

describe('address policy', () => {
  it('blocks everything but public addresses by default', () => {
    assert.equal(blockedCategory('8.8.8.8', 'dns.google', {}), null);
    assert.equal(blockedCategory('127.0.0.1', 'x', {}), 'loopback');
    assert.equal(blockedCategory('10.0.0.1', 'x', {}), 'private');
    assert.equal(blockedCategory('100.64.0.1', 'x', {}), 'carrier_grade_nat');
  });

  it('opens loopback and private ranges only through their own flags', () => {
    assert.equal(blockedCategory('127.0.0.1', 'x', { allowLoopback: true }), null);
    assert.equal(blockedCategory('::ffff:127.0.0.1', 'x', { allowLoopback: true }), null);
    assert.equal(blockedCategory('10.0.0.1', 'x', { allowLoopback: true }), 'private');
    assert.equal(blockedCategory('127.0.0.1', 'x', { allowPrivate: true }), 'loopback');
    assert.equal(blockedCategory('10.0.0.1', 'x', { allowPrivate: true }), null);
    assert.equal(blockedCategory('fd12::1', 'x', { allowPrivate: true }), null);
    assert.equal(blockedCategory('100.64.0.1', 'x', { allowPrivate: true }), null);
  });

  it('never opens metadata, link-local, unspecified, multicast or reserved addresses', () => {
    const everything = { allowLoopback: true, allowPrivate: true, allowedHosts: ['meta.test', '0.0.0.0/0', '::/0'] };
    for (const address of ['169.254.169.254', '100.100.100.200', 'fd00:ec2::254', '168.63.129.16', '169.254.1.1', '0.0.0.0', '::', '224.0.0.1', '192.0.2.1']) {
      assert.notEqual(blockedCategory(address, 'meta.test', everything), null, address);
    }
  });

  it('allowedHosts opens a named host, an IP address or a CIDR range, and nothing else', () => {
    const policy = { allowedHosts: ['Hooks.Internal.', '10.9.8.7', '172.20.0.0/16', 'fd00:1::/32'] };
    assert.equal(blockedCategory('10.1.1.1', 'hooks.internal', policy), null);
    assert.equal(blockedCategory('127.0.0.1', 'hooks.internal', policy), null);
    assert.equal(blockedCategory('10.1.1.1', 'other.internal', policy), 'private');
    assert.equal(blockedCategory('10.9.8.7', 'other.internal', policy), null);
    assert.equal(blockedCategory('::ffff:10.9.8.7', 'other.internal', policy), null);
    assert.equal(blockedCategory('172.20.3.4', 'x', policy), null);
    assert.equal(blockedCategory('172.21.3.4', 'x', policy), 'private');
    assert.equal(blockedCategory('fd00:1:2::3', 'x', policy), null);
    assert.equal(blockedCategory('fd00:2::3', 'x', policy), 'private');
  });
});
