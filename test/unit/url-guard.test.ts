import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { createCheckedLookup, type Resolver } from '../../src/shared/net/checked-lookup.js';
import { FetchError, type FetchErrorCode } from '../../src/shared/net/fetch-errors.js';
import { assertUrlAllowed, checkUrlTarget, parseFetchUrl } from '../../src/shared/net/url-guard.js';

const fixed =
  (table: Record<string, string[]>): Resolver =>
  async (hostname) => {
    const answers = table[hostname];
    if (answers === undefined) throw Object.assign(new Error(`no ${hostname}`), { code: 'ENOTFOUND' });
    return answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };

function isFetchError(code: FetchErrorCode, retryable = false) {
  return (err: unknown) => {
    assert.ok(err instanceof FetchError, `expected a FetchError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.retryable, retryable);
    return true;
  };
}

describe('URL parsing (the WHATWG parser, as undici uses it)', () => {
  it('normalises numeric IPv4 forms and IPv4-in-IPv6 before any check sees them', () => {
    const hosts: [string, string][] = [
      ['http://2130706433/', '127.0.0.1'],
      ['http://0x7f.1/', '127.0.0.1'],
      ['http://0x7f000001/', '127.0.0.1'],
      ['http://0177.0.0.1/', '127.0.0.1'],
      ['http://127.1/', '127.0.0.1'],
      ['http://%31%32%37.0.0.1/', '127.0.0.1'],
      ['http://0/', '0.0.0.0'],
      ['http://[::ffff:127.0.0.1]/', '[::ffff:7f00:1]'],
      ['http://[::127.0.0.1]/', '[::7f00:1]'],
      ['http://[64:ff9b::10.0.0.1]/', '[64:ff9b::a00:1]'],
      ['http://LOCALHOST./', 'localhost.'],
    ];
    for (const [input, hostname] of hosts) assert.equal(parseFetchUrl(input).hostname, hostname, input);
  });

  it('refuses schemes other than http and https', () => {
    for (const input of ['file:///etc/passwd', 'ftp://example.com/x', 'data:text/plain,hi', 'gopher://example.com:70/_x', 'javascript:alert(1)', 'ws://example.com/']) {
      assert.throws(() => parseFetchUrl(input), isFetchError('bad_scheme'), input);
    }
  });

  it('refuses what is not a URL, and URLs with credentials', () => {
    for (const input of ['not a url', 'http://', 'http://[fe80::1%25eth0]/', 'http://4294967296/']) {
      assert.throws(() => parseFetchUrl(input), isFetchError('invalid_url'), input);
    }
    assert.throws(() => parseFetchUrl('http://user:secret@example.com/'), isFetchError('invalid_url'));
  });
});

describe('URL target check (no DNS)', () => {
  it('refuses IP literals in blocked ranges, however they are spelled', () => {
    const blocked = [
      'http://127.0.0.1:8080/',
      'http://[::1]/',
      'http://[::ffff:127.0.0.1]/',
      'http://[::ffff:7f00:1]/',
      'http://[::127.0.0.1]/',
      'http://2130706433/',
      'http://0x7f.1/',
      'http://0/',
      'http://0.0.0.0/',
      'http://10.0.0.1/',
      'http://100.64.0.1/',
      'http://169.254.169.254/latest/meta-data/',
      'http://[fd00:ec2::254]/',
      'http://100.100.100.200/',
      'http://[64:ff9b::10.0.0.1]/',
      'http://[2002:a00:1::]/',
      'http://[fe80::1]/',
      'http://224.0.0.1/',
      'http://255.255.255.255/',
      'http://192.0.2.1/',
    ];
    for (const input of blocked) assert.throws(() => checkUrlTarget(parseFetchUrl(input), {}), isFetchError('blocked_address'), input);
  });

  it('lets public literals through, and loopback only with allowLoopback', () => {
    checkUrlTarget(parseFetchUrl('http://8.8.8.8/'), {});
    checkUrlTarget(parseFetchUrl('http://[2606:4700:4700::1111]/'), {});
    checkUrlTarget(parseFetchUrl('http://127.0.0.1:9/'), { allowLoopback: true });
    checkUrlTarget(parseFetchUrl('http://[::1]/'), { allowLoopback: true });
  });

  it('restricts ports only when allowedPorts is set', () => {
    checkUrlTarget(parseFetchUrl('http://8.8.8.8:22/'), {});
    checkUrlTarget(parseFetchUrl('https://8.8.8.8/'), { allowedPorts: [443] });
    assert.throws(() => checkUrlTarget(parseFetchUrl('http://8.8.8.8:22/'), { allowedPorts: [80, 443] }), isFetchError('blocked_address'));
    assert.throws(() => checkUrlTarget(parseFetchUrl('http://8.8.8.8/'), { allowedPorts: [443] }), isFetchError('blocked_address'));
  });

  it('names the host and the reason, never a resolved address', async () => {
    const err = await assertUrlAllowed('http://intranet.test:8080/a?token=s3cret', { resolve: fixed({ 'intranet.test': ['10.1.2.3'] }) }).catch((e: unknown) => e);
    assert.ok(err instanceof FetchError);
    assert.equal(err.message, 'refused to fetch: intranet.test:8080 resolves to a private-network address');
    assert.equal(err.host, 'intranet.test:8080');
  });
});

describe('URL check with DNS', () => {
  const resolve = fixed({ 'public.test': ['8.8.8.8'], 'intranet.test': ['10.1.2.3'], 'mixed.test': ['10.0.0.1', '8.8.4.4'], 'v6local.test': ['fd12::1'] });

  it('refuses a host name that resolves to a blocked address', async () => {
    await assert.rejects(assertUrlAllowed('http://intranet.test/', { resolve }), isFetchError('blocked_address'));
    await assert.rejects(assertUrlAllowed('http://v6local.test/', { resolve }), isFetchError('blocked_address'));
    await assertUrlAllowed('http://intranet.test/', { resolve, policy: { allowPrivate: true } });
    await assertUrlAllowed('http://intranet.test/', { resolve, policy: { allowedHosts: ['intranet.test'] } });
  });

  it('refuses localhost names without asking DNS, unless loopback is allowed', async () => {
    const never: Resolver = async () => [{ address: '8.8.8.8', family: 4 }];
    await assert.rejects(assertUrlAllowed('http://localhost/', { resolve: never }), isFetchError('blocked_address'));
    await assert.rejects(assertUrlAllowed('http://api.localhost./', { resolve: never }), isFetchError('blocked_address'));
    await assert.rejects(assertUrlAllowed('http://localhost/'), isFetchError('blocked_address'));
    await assertUrlAllowed('http://localhost/', { resolve: fixed({ localhost: ['127.0.0.1'] }), policy: { allowLoopback: true } });
  });

  it('lets a host through when at least one of its addresses is allowed', async () => {
    await assertUrlAllowed('http://public.test/', { resolve });
    await assertUrlAllowed('http://mixed.test/', { resolve });
  });

  it('tells a missing host (permanent) from a DNS hiccup (retryable)', async () => {
    await assert.rejects(assertUrlAllowed('http://nowhere.test/', { resolve }), isFetchError('dns_failed', false));
    const flaky: Resolver = async () => {
      throw Object.assign(new Error('try again'), { code: 'EAI_AGAIN' });
    };
    await assert.rejects(assertUrlAllowed('http://public.test/', { resolve: flaky }), isFetchError('dns_failed', true));
    await assert.rejects(assertUrlAllowed('http://public.test/', { resolve: async () => [] }), isFetchError('dns_failed', false));
  });
});

describe('checked lookup (what the socket connects to)', () => {
  const lookupWith = (resolve: Resolver, options: { all?: boolean; family?: number }, policy = {}) =>
    new Promise<{ address: string | LookupAddress[]; family: number | undefined }>((ok, fail) => {
      createCheckedLookup(policy, resolve)('host.test', { ...options }, (err, address, family) => (err ? fail(err) : ok({ address, family })));
    });

  it('hands the socket only the allowed addresses', async () => {
    const resolve = fixed({ 'host.test': ['127.0.0.1', '8.8.8.8', '10.0.0.1', '2606:4700:4700::1111'] });
    assert.deepEqual((await lookupWith(resolve, { all: true })).address, [
      { address: '8.8.8.8', family: 4 },
      { address: '2606:4700:4700::1111', family: 6 },
    ]);
    assert.deepEqual(await lookupWith(resolve, {}), { address: '8.8.8.8', family: 4 });
    assert.deepEqual(await lookupWith(resolve, { family: 6 }), { address: '2606:4700:4700::1111', family: 6 });
  });

  it('fails with blocked_address when nothing allowed is left', async () => {
    const resolve = fixed({ 'host.test': ['127.0.0.1', '::1'] });
    await assert.rejects(lookupWith(resolve, { all: true }), isFetchError('blocked_address'));
    assert.deepEqual(await lookupWith(resolve, { all: true }, { allowLoopback: true }).then((r) => r.address), [
      { address: '127.0.0.1', family: 4 },
      { address: '::1', family: 6 },
    ]);
  });

  it('treats a resolver answer that is not an address as blocked', async () => {
    await assert.rejects(lookupWith(fixed({ 'host.test': ['0x7f.1'] }), {}), isFetchError('blocked_address'));
  });
});
