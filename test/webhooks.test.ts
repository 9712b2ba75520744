import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { newTenant } from './helpers/fault-check.js';
import { freePort, sleep, Stack, waitFor } from './helpers/stack.js';

/**
 * Completion webhooks on real services, with receivers that are real HTTP servers on 127.0.0.1
 * (FETCH_ALLOW_LOOPBACK=true, as only tests set it): one signed event per photo, retries until a
 * receiver that was down is back, a receiver that hangs holds up nobody else, and URLs that point
 * into private networks are refused when they are registered.
 */

const TIMEOUT_MS = 15_000;
const PER_RECEIVER = 2;

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/** A webhook receiver: answers 204 (or never, when hanging) and keeps what it got. */
class Receiver {
  readonly events: Received[] = [];
  open = 0;
  maxOpen = 0;
  private readonly sockets = new Set<Socket>();
  private server: Server | null = null;
  port = 0;

  constructor(private readonly mode: 'ok' | 'hang' = 'ok') {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks/photopipe`;
  }

  async listen(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      this.open++;
      this.maxOpen = Math.max(this.maxOpen, this.open);
      res.on('close', () => this.open--);
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        this.events.push({ headers: req.headers, body, at: Date.now() });
        if (this.mode === 'ok') res.writeHead(204).end();
        // hang: never answer
      });
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(port, '127.0.0.1', () => resolve());
    });
    const address = this.server.address();
    this.port = typeof address === 'object' && address ? address.port : port;
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server = null;
  }

  bodies(): { id: string; type: string; photo: { id: string; status: string; variants: Record<string, { url: string }> | null; error: { code: string } | null; duplicateOf: string | null } }[] {
    return this.events.map((e) => JSON.parse(e.body));
  }
}

/** What a receiver does: the README's verifyPhotopipe, as it is printed there (not photopipe's own code). */
function verifyPhotopipe(rawBody: string, header: string | string[] | undefined, secret: string, toleranceSec = 300): boolean {
  const fields = Object.fromEntries(String(header).split(',').map((kv) => kv.split('=', 2)));
  const t = Number(fields.t);
  if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > toleranceSec) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${rawBody}`).digest();
  const given = Buffer.from(fields.v1 ?? '', 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
const verify = (header: string | string[] | undefined, body: string, secret: string) => verifyPhotopipe(body, header, secret);

describe('webhooks', { timeout: 300_000 }, () => {
  let stack: Stack;
  const receivers: Receiver[] = [];
  const receiver = async (mode: 'ok' | 'hang' = 'ok', port = 0) => {
    const r = await new Receiver(mode).listen(port);
    receivers.push(r);
    return r;
  };
  const api = (key: string, method: string, path: string, body?: unknown) =>
    fetch(`${stack.apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const register = async (key: string, url: string): Promise<string> => {
    const res = await api(key, 'PUT', '/v1/webhook', { url });
    const body = (await res.json()) as { secret?: string };
    assert.ok(res.status === 201 || res.status === 200, JSON.stringify(body));
    assert.match(body.secret ?? '', /^whsec_[A-Za-z0-9_-]{43}$/);
    return body.secret ?? '';
  };
  const upload = async (key: string, bytes: Buffer, headers: Record<string, string> = {}) => {
    const res = await fetch(`${stack.apiUrl}/v1/photos`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'image/jpeg', ...headers }, body: bytes });
    const body = (await res.json()) as { id: string };
    assert.equal(res.status, 202, JSON.stringify(body));
    return body.id;
  };
  const deliveries = async (key: string) =>
    ((await (await api(key, 'GET', '/v1/webhook/deliveries?limit=50')).json()) as {
      items: { photoId: string; state: string; attempts: number; lastError: string | null; lastStatusCode: number | null; nextAttemptAt: string | null; target: string; eventId: string }[];
    }).items;

  before(async () => {
    stack = await Stack.start({
      workers: 'one',
      env: {
        FETCH_ALLOW_LOOPBACK: 'true',
        WEBHOOK_RETRY_DELAYS_MS: '300,600,1000,1000,1000,1000,1000,1000,1000,1000,1000,1000',
        WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS),
        WEBHOOK_MAX_IN_FLIGHT_PER_RECEIVER: String(PER_RECEIVER),
        WEBHOOK_CONCURRENCY: '8',
      },
    });
  });

  after(async () => {
    for (const r of receivers) await r.close();
    await stack?.stop();
  });

  it('registers, shows (without the secret), replaces and deletes a webhook; refuses private, metadata and non-http URLs', async () => {
    const { key } = await newTenant(stack, 'reg');
    assert.equal((await api(key, 'GET', '/v1/webhook')).status, 404);
    for (const url of [
      'http://10.1.2.3/hook',
      'http://192.168.0.10:8080/hook',
      'http://172.16.5.4/hook',
      'http://169.254.169.254/latest/meta-data/',
      'http://[fd00:ec2::254]/',
      'http://[::ffff:10.0.0.1]/hook',
      'http://100.64.0.1/hook',
      'http://0.0.0.0/hook',
      'ftp://example.com/hook',
      'file:///etc/passwd',
      'http://user:pass@example.com/hook',
      'not a url',
      'http://no-such-host.invalid/hook',
    ]) {
      const res = await api(key, 'PUT', '/v1/webhook', { url });
      assert.equal(res.status, 400, url);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, 'invalid_webhook_url', url);
    }
    assert.equal((await api(key, 'PUT', '/v1/webhook', { nope: 1 })).status, 400);
    assert.equal((await api(key, 'GET', '/v1/webhook')).status, 404, 'nothing registered by the refusals');

    const r = await receiver();
    const first = await api(key, 'PUT', '/v1/webhook', { url: r.url });
    assert.equal(first.status, 201);
    const { secret } = (await first.json()) as { secret: string };
    const shown = await api(key, 'GET', '/v1/webhook');
    const view = (await shown.json()) as Record<string, unknown>;
    assert.equal(view.url, r.url);
    assert.ok(!('secret' in view) && !JSON.stringify(view).includes(secret), 'the secret is shown once only');
    const second = await api(key, 'PUT', '/v1/webhook', { url: r.url });
    assert.equal(second.status, 200);
    assert.notEqual(((await second.json()) as { secret: string }).secret, secret, 'a new registration, a new secret');

    // An upload's own notifyUrl is checked the same way.
    const bad = await fetch(`${stack.apiUrl}/v1/photos?notifyUrl=${encodeURIComponent('http://10.0.0.7/x')}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'image/jpeg' },
      body: distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), 'bad-notify'),
    });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'invalid_notify_url');

    assert.equal((await api(key, 'DELETE', '/v1/webhook')).status, 204);
    assert.equal((await api(key, 'GET', '/v1/webhook')).status, 404);
    assert.equal((await api(key, 'DELETE', '/v1/webhook')).status, 404);
    const unregistered = await fetch(`${stack.apiUrl}/v1/photos`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'image/jpeg', 'x-notify-url': r.url },
      body: distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), 'no-hook'),
    });
    assert.equal(unregistered.status, 400);
    assert.equal(((await unregistered.json()) as { error: { code: string } }).error.code, 'webhook_not_registered');
  });

  it('POSTs exactly one signed event per photo (complete, duplicate, failed; notifyUrl instead of the webhook); a tampered body fails verification', async () => {
    const hook = await receiver();
    const own = await receiver();
    const secret = await register(stack.apiKey, hook.url);
    const jpeg = photo('jpg/gps/DSCN0010.jpg');
    const a = distinctJpeg(jpeg, 'one-a');
    const ids = {
      a: await upload(stack.apiKey, a),
      b: await upload(stack.apiKey, distinctJpeg(jpeg, 'one-b')),
      failed: await upload(stack.apiKey, photo('jpg/corrupted.jpg')),
      notify: await upload(stack.apiKey, distinctJpeg(jpeg, 'one-notify'), { 'x-notify-url': own.url }),
    };
    assert.equal(await stack.waitFinal(ids.a), 'complete');
    const dup = await upload(stack.apiKey, a);
    const states = await stack.waitAllFinal([...Object.values(ids), dup], 120_000);
    assert.equal(states.get(dup), 'duplicate');
    assert.equal(states.get(ids.failed), 'failed');

    await waitFor('4 events at the webhook and 1 at the notifyUrl', async () => hook.events.length >= 4 && own.events.length >= 1, 30_000);
    await sleep(2_000); // any repeat would have arrived by now
    assert.equal(hook.events.length, 4, hook.events.map((e) => e.body).join('\n'));
    assert.equal(own.events.length, 1);

    const byPhoto = new Map(hook.bodies().map((b) => [b.photo.id, b]));
    assert.deepEqual([...byPhoto.keys()].sort(), [ids.a, ids.b, ids.failed, dup].sort(), 'one event per photo');
    assert.equal(new Set(hook.bodies().map((b) => b.id)).size, 4, 'one event id per event');
    assert.equal(byPhoto.get(ids.a)?.photo.status, 'complete');
    assert.match(byPhoto.get(ids.a)?.photo.variants?.framed?.url ?? '', /framed\.jpg$/);
    assert.match(byPhoto.get(ids.a)?.photo.variants?.thumbnail?.url ?? '', /thumbnail\.jpg$/);
    assert.equal(byPhoto.get(dup)?.photo.status, 'duplicate');
    assert.equal(byPhoto.get(dup)?.photo.duplicateOf, ids.a);
    assert.equal(byPhoto.get(ids.failed)?.photo.status, 'failed');
    assert.ok(byPhoto.get(ids.failed)?.photo.error?.code, 'a failed photo says why');
    assert.equal(own.bodies()[0]?.photo.id, ids.notify, "the upload's own URL got its event, the webhook did not");

    for (const e of [...hook.events, ...own.events]) {
      assert.equal(e.headers['content-type'], 'application/json');
      assert.equal(e.headers['photopipe-event-id'], JSON.parse(e.body).id);
      assert.ok(verify(e.headers['photopipe-signature'], e.body, secret), 'valid signature');
      const tampered = e.body.replace(/"status":"(\w+)"/, '"status":"complete "');
      assert.notEqual(tampered, e.body);
      assert.ok(!verify(e.headers['photopipe-signature'], tampered, secret), 'a tampered body fails verification');
      assert.ok(!verify(e.headers['photopipe-signature'], e.body, `${secret}x`), 'another secret fails verification');
    }
    const list = await deliveries(stack.apiKey);
    for (const id of [...Object.values(ids), dup]) {
      const d = list.find((x) => x.photoId === id);
      assert.equal(d?.state, 'delivered', id);
      assert.equal(d?.attempts, 1);
      assert.equal(d?.lastStatusCode, 204);
    }
    assert.equal(list.find((x) => x.photoId === ids.notify)?.target, 'notify_url');
  });

  it('a receiver that is down gets its event once it is back (retries with backoff)', async () => {
    const { key } = await newTenant(stack, 'down');
    const port = await freePort();
    const secret = await register(key, `http://127.0.0.1:${port}/hooks/photopipe`);
    const id = await upload(key, distinctJpeg(photo('jpg/gps/DSCN0012.jpg'), 'down'));
    assert.equal(await stack.waitFinal(id), 'complete');
    // Nobody listens: attempts fail (connection refused) and are retried.
    const failing = await waitFor(
      'two failed attempts',
      async () => {
        const d = (await deliveries(key)).find((x) => x.photoId === id);
        return d && d.attempts >= 2 ? d : null;
      },
      30_000,
      100,
    );
    assert.equal(failing.state, 'pending');
    assert.ok(failing.lastError, 'the last error is shown');
    assert.ok(failing.nextAttemptAt, 'and when the next attempt is due');

    const back = await receiver('ok', port);
    await waitFor('the event, once the receiver is back', async () => back.events.length >= 1, 30_000);
    await sleep(1_500);
    assert.equal(back.events.length, 1, 'delivered once');
    assert.ok(verify(back.events[0]?.headers['photopipe-signature'], back.events[0]?.body ?? '', secret));
    assert.equal(JSON.parse(back.events[0]?.body ?? '{}').photo.id, id);
    const done = (await deliveries(key)).find((x) => x.photoId === id);
    assert.equal(done?.state, 'delivered');
    assert.ok((done?.attempts ?? 0) >= 3, `attempts ${done?.attempts}`);
    assert.equal(Number(back.events[0]?.headers['photopipe-delivery-attempt']), done?.attempts);
  });

  it("a receiver that hangs delays no other tenant's photos or events, and holds at most its own share of the webhook role", async () => {
    const slow = await newTenant(stack, 'slow');
    const fast = await newTenant(stack, 'fast');
    const hanging = await receiver('hang');
    const quick = await receiver('ok');
    await register(slow.key, hanging.url);
    await register(fast.key, quick.url);

    const slowIds = [];
    for (let i = 0; i < 6; i++) slowIds.push(await upload(slow.key, distinctJpeg(photo('jpg/gps/DSCN0010.jpg'), `slow-${i}`)));
    await waitFor('the hanging receiver to hold its deliveries', async () => hanging.open >= PER_RECEIVER, 60_000);

    const t0 = Date.now();
    const id = await upload(fast.key, distinctJpeg(photo('jpg/gps/DSCN0012.jpg'), 'fast'));
    assert.equal(await stack.waitFinal(id), 'complete');
    const completedMs = Date.now() - t0;
    await waitFor("the other tenant's event", async () => quick.events.length >= 1, TIMEOUT_MS);
    const eventMs = (quick.events[0]?.at ?? Infinity) - t0;
    console.log(`# hanging receiver: other tenant's photo complete after ${completedMs} ms, its event after ${eventMs} ms (attempt timeout ${TIMEOUT_MS} ms)`);
    assert.ok(eventMs < TIMEOUT_MS / 2, `the other tenant's event waited for no timeout (${eventMs} ms)`);
    assert.ok(completedMs < 10_000, `photo complete in ${completedMs} ms`);

    // The slow tenant's photos are complete too: the pipeline only publishes events.
    const states = await stack.waitAllFinal(slowIds, 60_000);
    assert.deepEqual([...new Set(states.values())], ['complete']);
    assert.ok(hanging.maxOpen <= PER_RECEIVER, `the hanging receiver had ${hanging.maxOpen} attempts open at once (limit ${PER_RECEIVER})`);
    const slowList = await deliveries(slow.key);
    assert.equal(slowList.length, 6);
    assert.ok(slowList.every((d) => d.state === 'pending'), 'still trying');
    await hanging.close();
  });
});
