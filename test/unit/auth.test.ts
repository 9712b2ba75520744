import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { AdminGuard, Authenticator } from '../../src/api/auth.js';
import { memoryAuthFailureLimiter, type AuthFailureLimiter } from '../../src/api/auth-failures.js';
import { clientKey } from '../../src/api/client-address.js';
import { HttpError } from '../../src/shared/errors.js';

/** A counting fake of ApiKeyRepo's lookup: keys → tenants, revocable, and optionally slow or failing. */
class FakeKeys {
  readonly tenants = new Map<string, string>();
  queries = 0;
  delayMs = 0;
  failing = false;
  async tenantFor(key: string): Promise<string | null> {
    this.queries++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failing) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    return this.tenants.get(key) ?? null;
  }
}

const LIMIT = 30;

function setup(opts: { maxEntries?: number; ttlMs?: number; negativeTtlMs?: number; failures?: AuthFailureLimiter } = {}) {
  const keys = new FakeKeys();
  const auth = new Authenticator({
    keys,
    failures: opts.failures ?? memoryAuthFailureLimiter(LIMIT, 60),
    maxEntries: opts.maxEntries ?? 10_000,
    ttlMs: opts.ttlMs ?? 30_000,
    negativeTtlMs: opts.negativeTtlMs ?? 5_000,
  });
  return { keys, auth };
}

const bearer = (key: string) => `Bearer ${key}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function status(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err) {
    if (err instanceof HttpError) return err.status;
    throw err;
  }
}

describe('authenticator', () => {
  it('turns at most LIMIT random unknown keys from one client into Postgres queries, then answers 429 without asking', async () => {
    const { keys, auth } = setup();
    const statuses: number[] = [];
    for (let i = 0; i < 500; i++) statuses.push(await status(auth.tenantFor(bearer(`pp_${randomUUID()}`), '203.0.113.9')));
    assert.equal(keys.queries, LIMIT);
    assert.deepEqual(statuses.slice(0, LIMIT), Array(LIMIT).fill(401));
    assert.deepEqual(new Set(statuses.slice(LIMIT)), new Set([429]));
    const err = await auth.tenantFor(bearer('pp_more'), '203.0.113.9').catch((e: unknown) => e);
    assert.ok(err instanceof HttpError);
    assert.equal(err.code, 'rate_limited');
    assert.ok(Number(err.headers['retry-after']) >= 1 && Number(err.headers['retry-after']) <= 60);
  });

  it('keeps serving a valid key, from the same and from other clients, while one client is blocked', async () => {
    const { keys, auth } = setup();
    keys.tenants.set('pp_good', 'acme');
    keys.tenants.set('pp_other', 'globex');
    assert.equal(await auth.tenantFor(bearer('pp_good'), '203.0.113.9'), 'acme');
    for (let i = 0; i <= LIMIT; i++) await status(auth.tenantFor(bearer(`pp_${i}`), '203.0.113.9'));
    // Verified before: served from the cache, not held up by the block.
    assert.equal(await auth.tenantFor(bearer('pp_good'), '203.0.113.9'), 'acme');
    // Not verified yet: a blocked client gets no lookup, another client does.
    assert.equal(await status(auth.tenantFor(bearer('pp_other'), '203.0.113.9')), 429);
    assert.equal(await auth.tenantFor(bearer('pp_other'), '198.51.100.1'), 'globex');
    assert.equal(await status(auth.tenantFor(bearer('pp_wrong'), '198.51.100.1')), 401);
  });

  it('asks Postgres once per key: verified keys for the TTL, unknown keys briefly, concurrent lookups shared', async () => {
    const { keys, auth } = setup({ negativeTtlMs: 5_000 });
    keys.tenants.set('pp_good', 'acme');
    for (let i = 0; i < 100; i++) assert.equal(await auth.tenantFor(bearer('pp_good'), `10.0.0.${i}`), 'acme');
    assert.equal(keys.queries, 1);
    // The same unknown key, again and again (each from its own client, so no limit is reached).
    for (let i = 0; i < 100; i++) assert.equal(await status(auth.tenantFor(bearer('pp_unknown'), `10.0.1.${i}`)), 401);
    assert.equal(keys.queries, 2);
    // A burst of first requests with one new key is one query.
    keys.delayMs = 20;
    keys.tenants.set('pp_new', 'initech');
    const tenants = await Promise.all(Array.from({ length: 50 }, (_, i) => auth.tenantFor(bearer('pp_new'), `10.0.2.${i}`)));
    assert.ok(tenants.every((t) => t === 'initech'));
    assert.equal(keys.queries, 3);
  });

  it('stops a revoked key within the TTL, and takes a new key after the negative TTL', async () => {
    const { keys, auth } = setup({ ttlMs: 80, negativeTtlMs: 40 });
    keys.tenants.set('pp_soon_revoked', 'acme');
    assert.equal(await auth.tenantFor(bearer('pp_soon_revoked'), '10.0.0.1'), 'acme');
    keys.tenants.delete('pp_soon_revoked');
    assert.equal(await auth.tenantFor(bearer('pp_soon_revoked'), '10.0.0.1'), 'acme', 'still cached');
    await sleep(100);
    assert.equal(await status(auth.tenantFor(bearer('pp_soon_revoked'), '10.0.0.1')), 401);

    assert.equal(await status(auth.tenantFor(bearer('pp_later'), '10.0.0.2')), 401);
    keys.tenants.set('pp_later', 'globex');
    assert.equal(await status(auth.tenantFor(bearer('pp_later'), '10.0.0.2')), 401, 'remembered as unknown');
    await sleep(60);
    assert.equal(await auth.tenantFor(bearer('pp_later'), '10.0.0.2'), 'globex');
  });

  it('holds a bounded number of entries, keyed by SHA-256 and never by the key itself', async () => {
    const { keys, auth } = setup({ maxEntries: 100 });
    const plain: string[] = [];
    for (let i = 0; i < 1_000; i++) {
      const key = `pp_${randomUUID()}`;
      plain.push(key);
      keys.tenants.set(key, `t${i}`);
      await auth.tenantFor(bearer(key), '10.0.0.1');
    }
    assert.equal(auth.size, 100);
    // Least recently used went first: the newest key is still cached, the first is asked again.
    const before = keys.queries;
    await auth.tenantFor(bearer(plain.at(-1)!), '10.0.0.1');
    assert.equal(keys.queries, before);
    await auth.tenantFor(bearer(plain[0]!), '10.0.0.1');
    assert.equal(keys.queries, before + 1);
    // White-box: what the cache is keyed by.
    const cachedKeys = [...(auth as unknown as { cache: { keys(): Iterable<string> } }).cache.keys()];
    assert.equal(cachedKeys.length, 100);
    for (const k of plain) assert.ok(!cachedKeys.includes(k));
    assert.ok(cachedKeys.includes(createHash('sha256').update(plain[0]!).digest('base64url')));
  });

  it('refuses missing, malformed and absurdly long keys without a lookup, counting them as failures', async () => {
    const { keys, auth } = setup();
    for (const header of [undefined, '', 'Bearer', 'Bearer ', 'Basic Zm9vOmJhcg==', 'Bearer a b', `Bearer ${'k'.repeat(300)}`]) {
      assert.equal(await status(auth.tenantFor(header, '10.9.9.9')), 401, String(header));
    }
    assert.equal(keys.queries, 0);
    for (let i = 0; i < LIMIT; i++) await status(auth.tenantFor(undefined, '10.9.9.9'));
    assert.equal(await status(auth.tenantFor(undefined, '10.9.9.9')), 429);
  });

  it('answers 503 when Postgres cannot be asked, and does not remember that as unknown', async () => {
    const { keys, auth } = setup();
    keys.tenants.set('pp_good', 'acme');
    keys.failing = true;
    const err = await auth.tenantFor(bearer('pp_good'), '10.0.0.1').catch((e: unknown) => e);
    assert.ok(err instanceof HttpError);
    assert.equal(err.status, 503);
    assert.doesNotMatch(err.message, /ECONNREFUSED|5432/);
    keys.failing = false;
    assert.equal(await auth.tenantFor(bearer('pp_good'), '10.0.0.1'), 'acme');
  });

  it('lets the key check go on when the failure limiter is away', async () => {
    const broken: AuthFailureLimiter = { blockedForMs: async () => 0, recordFailure: async () => 0 };
    const { keys, auth } = setup({ failures: broken });
    keys.tenants.set('pp_good', 'acme');
    assert.equal(await auth.tenantFor(bearer('pp_good'), '10.0.0.1'), 'acme');
    assert.equal(await status(auth.tenantFor(bearer('pp_bad'), '10.0.0.1')), 401);
  });
});

describe('admin guard', () => {
  it('is 404 when disabled, 401 for wrong keys, counts them, and 429 past the limit', async () => {
    const failures = memoryAuthFailureLimiter(3, 60);
    assert.equal(await status(new AdminGuard(undefined, failures).check(bearer('anything'), '10.0.0.1')), 404);
    const guard = new AdminGuard('the-admin-key-0123456789', failures);
    assert.equal(await status(guard.check(bearer('the-admin-key-0123456789'), '10.0.0.1')), 200);
    for (const wrong of [undefined, bearer('the-admin-key-012345678'), bearer('the-admin-key-0123456789x'), bearer('x')]) {
      assert.equal(await status(guard.check(wrong, '10.0.0.2')), wrong === bearer('x') ? 429 : 401);
    }
    // Blocked: even the right key waits (an admin key must not be guessable by trying).
    assert.equal(await status(guard.check(bearer('the-admin-key-0123456789'), '10.0.0.2')), 429);
    assert.equal(await status(guard.check(bearer('the-admin-key-0123456789'), '10.0.0.3')), 200);
  });
});

describe('client keys for rate limiting', () => {
  it('counts IPv4 by address, IPv6 by /64, mapped IPv4 as IPv4', () => {
    assert.equal(clientKey('203.0.113.9'), '203.0.113.9');
    assert.equal(clientKey('::ffff:203.0.113.9'), '203.0.113.9');
    assert.equal(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:2:ffff:ffff:ffff:ffff'));
    assert.notEqual(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:3::1'));
    assert.equal(clientKey(undefined), 'other:unknown');
  });
});
