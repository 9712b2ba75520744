import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { signatureHeader, verifySignature } from '../../src/webhooks/signature.js';
import { nextAttemptAt, nextHop, retryWindowMs } from '../../src/webhooks/delivery-schedule.js';
import { eventIdOf } from '../../src/webhooks/photo-event.js';
import { InvalidWebhookUrlError, validateWebhookUrl, webhookPolicy } from '../../src/webhooks/webhook-url.js';
import { parseWork } from '../../src/workers/webhook/webhook-dispatcher.js';
import { loadConfig } from '../../src/shared/config.js';
import type { Resolver } from '../../src/shared/net/index.js';

const SECRET = 'whsec_test-secret';
const BODY = '{"id":"evt_1","type":"photo.final","photo":{"status":"complete"}}';

describe('webhook signatures (HMAC-SHA256 over "<t>.<body>")', () => {
  it('signs t and the raw body; the receiver recomputes it, and nothing else passes', () => {
    const now = Date.UTC(2026, 0, 1, 12);
    const header = signatureHeader(SECRET, BODY, now);
    const t = Math.floor(now / 1000);
    assert.equal(header, `t=${t},v1=${createHmac('sha256', SECRET).update(`${t}.${BODY}`).digest('hex')}`);
    assert.ok(verifySignature(header, BODY, SECRET, { nowMs: now }));
    assert.ok(!verifySignature(header, BODY.replace('complete', 'failed'), SECRET, { nowMs: now }), 'tampered body');
    assert.ok(!verifySignature(header, BODY, `${SECRET}x`, { nowMs: now }), 'other secret');
    assert.ok(!verifySignature(header, BODY, SECRET, { nowMs: now + 301_000 }), 'too old (replayed)');
    assert.ok(!verifySignature(header.replace(/t=\d+/, `t=${t + 1}`), BODY, SECRET, { nowMs: now }), 'timestamp changed');
    assert.ok(!verifySignature(undefined, BODY, SECRET) && !verifySignature('v1=abc', BODY, SECRET));
    // A rotated secret: the receiver accepts any v1 that matches.
    assert.ok(verifySignature(`${header},v1=${'0'.repeat(64)}`, BODY, SECRET, { nowMs: now }));
  });

  it('gives every copy of one event the same id, and different events different ids', () => {
    const photoId = '5b3c1f7e-0c1d-4f7e-9a1b-2c3d4e5f6a7b';
    assert.equal(eventIdOf({ photoId, status: 'complete' }), eventIdOf({ photoId, status: 'complete' }));
    assert.notEqual(eventIdOf({ photoId, status: 'complete' }), eventIdOf({ photoId, status: 'failed' }));
    assert.match(eventIdOf({ photoId, status: 'complete' }), /^evt_[0-9a-f]{32}$/);
  });
});

describe('webhook retry schedule', () => {
  const levels = [1_000, 5_000, 30_000, 120_000, 600_000].map((delayMs) => ({ label: `${delayMs}`, delayMs, queue: `q.${delayMs}` }));

  it('waits each configured delay in turn (with jitter), then gives up', () => {
    const delays = [10_000, 60_000, 300_000];
    const now = 1_000_000;
    assert.equal(nextAttemptAt(1, delays, 0, now)?.getTime(), now + 10_000);
    assert.equal(nextAttemptAt(3, delays, 0, now)?.getTime(), now + 300_000);
    assert.equal(nextAttemptAt(4, delays, 0, now), null, 'list used up: given up');
    assert.equal(nextAttemptAt(1, delays, 0.2, now, () => 0)?.getTime(), now + 8_000);
    assert.equal(nextAttemptAt(1, delays, 0.2, now, () => 1)?.getTime(), now + 12_000);
  });

  it('by default keeps trying for about a day, so a receiver down for an hour still gets its events', () => {
    const { WEBHOOK_RETRY_DELAYS_MS: delays } = loadConfig({});
    const hours = retryWindowMs(delays) / 3_600_000;
    assert.ok(hours > 20 && hours <= 24, `${hours} h`);
    // Attempt times from the first: some attempt falls after the first hour, and several after it.
    const at = delays.reduce<number[]>((acc, d) => [...acc, (acc.at(-1) ?? 0) + d], [0]);
    assert.ok(at.filter((t) => t > 3_600_000).length >= 4, at.join(', '));
  });

  it('reaches a wait longer than the longest delay queue in hops of the longest level that fits', () => {
    assert.equal(nextHop(8 * 3_600_000, levels).level.delayMs, 600_000);
    assert.equal(nextHop(45_000, levels).level.delayMs, 30_000);
    assert.equal(nextHop(45_000, levels).ttlMs, 30_000, 'the level TTL keeps the queue in FIFO order');
    assert.equal(nextHop(300, levels).level.delayMs, 1_000, 'less than the shortest: the shortest');
  });
});

describe('webhook URLs when they are registered', () => {
  const dns: Resolver = async (host) => {
    const table: Record<string, string[]> = { 'hooks.example.com': ['93.184.216.34'], 'internal.example.com': ['10.0.0.8'], 'meta.example.com': ['169.254.169.254'] };
    const answers = table[host];
    if (!answers) throw Object.assign(new Error(`no ${host}`), { code: 'ENOTFOUND' });
    return answers.map((address) => ({ address, family: 4 }));
  };
  const refused = (pattern: RegExp) => (err: unknown) => err instanceof InvalidWebhookUrlError && pattern.test(err.message);

  it('takes public http(s) URLs, resolving their host', async () => {
    assert.equal(await validateWebhookUrl('https://hooks.example.com/photopipe?x=1', webhookPolicy(loadConfig({})), dns), 'https://hooks.example.com/photopipe?x=1');
  });

  it('refuses loopback by default, and accepts it only with FETCH_ALLOW_LOOPBACK', async () => {
    const strict = webhookPolicy(loadConfig({}));
    assert.equal(loadConfig({}).FETCH_ALLOW_LOOPBACK, false);
    await assert.rejects(validateWebhookUrl('http://127.0.0.1:9000/hook', strict, dns), refused(/loopback/));
    await assert.rejects(validateWebhookUrl('http://localhost/hook', strict, dns), refused(/loopback/));
    const tests = webhookPolicy(loadConfig({ FETCH_ALLOW_LOOPBACK: 'true' }));
    assert.equal(await validateWebhookUrl('http://127.0.0.1:9000/hook', tests, dns), 'http://127.0.0.1:9000/hook');
    // Loopback allowed is no opening for private networks or metadata.
    await assert.rejects(validateWebhookUrl('http://10.1.2.3/hook', tests, dns), refused(/private/));
    await assert.rejects(validateWebhookUrl('http://internal.example.com/hook', tests, dns), refused(/resolves to/));
    await assert.rejects(validateWebhookUrl('http://meta.example.com/', tests, dns), refused(/refused/));
  });

  it('refuses other schemes, credentials, unknown hosts, non-strings and very long URLs', async () => {
    const policy = webhookPolicy(loadConfig({}));
    for (const url of ['ftp://hooks.example.com/x', 'javascript:alert(1)', 'https://u:p@hooks.example.com/', 'https://nowhere.example.com/', 'not a url', '', 42, null]) {
      await assert.rejects(validateWebhookUrl(url, policy, dns), (err) => err instanceof InvalidWebhookUrlError, String(url));
    }
    await assert.rejects(validateWebhookUrl(`https://hooks.example.com/${'a'.repeat(2_100)}`, policy, dns), refused(/longer than 2048/));
  });
});

describe('webhook role messages', () => {
  const event = { v: 1, type: 'photo.final', photoId: '5b3c1f7e-0c1d-4f7e-9a1b-2c3d4e5f6a7b', tenantId: 'acme', status: 'complete', at: '2026-01-01T00:00:00.000Z' };
  const json = (x: unknown) => Buffer.from(JSON.stringify(x));

  it('reads photo.final events, its own delivery and parked-event messages, and nothing else', () => {
    assert.deepEqual(parseWork(json(event)), { kind: 'event', event });
    assert.deepEqual(parseWork(json({ v: 1, type: 'webhook.event', event })), { kind: 'event', event });
    assert.deepEqual(parseWork(json({ v: 1, type: 'webhook.delivery', deliveryId: event.photoId })), { kind: 'delivery', deliveryId: event.photoId });
    for (const junk of [Buffer.from('not json'), json({ v: 1, type: 'webhook.delivery', deliveryId: 'x' }), json({ ...event, status: 'queued' }), json({ v: 2, type: 'photo.final' })]) {
      assert.equal(parseWork(junk), null);
    }
  });
});
