import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { createInterface } from 'node:readline';
import type { Resolver } from '../../src/shared/net/checked-lookup.js';
import { FetchError, type FetchErrorCode } from '../../src/shared/net/fetch-errors.js';
import { safeFetch, safeFetchStream } from '../../src/shared/net/safe-fetch.js';
import { startLocalServer, type LocalServer } from './helpers/local-server.js';

/**
 * safeFetch against real HTTP servers on 127.0.0.1. Every refused destination below is refused
 * before a packet leaves: IP literals by the URL check, host names by the (injected) resolver.
 */

const loopback = { allowLoopback: true };

function fetchError(code: FetchErrorCode, retryable: boolean) {
  return (err: unknown) => {
    assert.ok(err instanceof FetchError, `expected a FetchError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.retryable, retryable, `${code} retryable`);
    return true;
  };
}

/** Host name -> addresses; a list of lists answers each call with the next one (the last repeats). */
function scriptedResolver(table: Record<string, string[] | string[][]>) {
  const calls: string[] = [];
  const resolve: Resolver = async (hostname) => {
    calls.push(hostname);
    const entry = table[hostname];
    if (entry === undefined) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    const seen = calls.filter((h) => h === hostname).length;
    const answers: string[] = typeof entry[0] === 'string' ? (entry as string[]) : ((entry as string[][])[seen - 1] ?? (entry as string[][]).at(-1) ?? []);
    return answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return { resolve, calls };
}

function send(res: ServerResponse, status: number, body = '', headers: Record<string, string> = {}): void {
  res.writeHead(status, headers);
  res.end(body);
}

describe('safeFetch', () => {
  let web: LocalServer;
  let other: LocalServer;

  before(async () => {
    web = await startLocalServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const hop = /^\/hop\/(\d+)$/.exec(url.pathname);
      if (hop) {
        const left = Number(hop[1]);
        return left > 0 ? send(res, 302, '', { location: `/hop/${left - 1}` }) : send(res, 200, 'landed');
      }
      switch (url.pathname) {
        case '/ok':
          return send(res, 200, 'hello', { 'content-type': 'text/plain' });
        case '/redirect':
          return send(res, Number(url.searchParams.get('status') ?? 302), '', { location: url.searchParams.get('to') ?? '/' });
        case '/status':
          return send(res, Number(url.searchParams.get('code')), 'no', { 'retry-after': '7' });
        case '/echo':
          return send(res, 200, JSON.stringify({ method: req.method }));
        case '/declared-big':
          return send(res, 200, 'x'.repeat(1000), { 'content-length': '1000' });
        case '/chunked-big': {
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          let sent = 0;
          const more = () => {
            while (sent < 32 && res.write(Buffer.alloc(8192, 1))) sent += 1;
            if (sent >= 32 || res.destroyed) res.end();
            else res.once('drain', () => ((sent += 1), more()));
          };
          return more();
        }
        case '/lines': {
          const n = Number(url.searchParams.get('n'));
          res.writeHead(200, { 'content-type': 'text/plain' });
          for (let i = 0; i < n; i += 1000) {
            const block = Array.from({ length: Math.min(1000, n - i) }, (_, j) => `https://img.test/${i + j}.jpg\n`).join('');
            res.write(block);
          }
          return res.end();
        }
        case '/hang':
          return; // never answers
        case '/stall':
          res.writeHead(200, { 'content-type': 'text/plain' });
          return void res.write('first part, then nothing');
        default:
          return send(res, 404, 'not found');
      }
    });
    other = await startLocalServer((_req, res) => send(res, 200, 'other'));
  });

  after(async () => {
    await web.close();
    await other.close();
  });

  describe('refuses by default', () => {
    it('loopback, private, CGNAT, metadata and unspecified destinations, in every spelling', async () => {
      const urls = [
        `http://127.0.0.1:${web.port}/ok`,
        'http://localhost/',
        `http://localhost:${web.port}/ok`,
        'http://[::1]/',
        'http://[::ffff:127.0.0.1]/',
        'http://2130706433/',
        'http://0x7f.1/',
        'http://169.254.169.254/latest/meta-data/',
        'http://10.0.0.1/',
        'http://100.64.0.1/',
        'http://[fd00:ec2::254]/',
        'http://0.0.0.0/',
      ];
      const before = web.connections();
      for (const url of urls) await assert.rejects(safeFetch(url), fetchError('blocked_address', false), url);
      assert.equal(web.connections(), before, 'nothing reached the loopback server');
    });

    it('a host name that resolves to a private address', async () => {
      const { resolve, calls } = scriptedResolver({ 'intranet.test': ['10.1.2.3'] });
      await assert.rejects(safeFetch('http://intranet.test/', { resolve }), (err: unknown) => {
        assert.ok(err instanceof FetchError);
        assert.equal(err.code, 'blocked_address');
        assert.equal(err.message, 'refused to fetch: intranet.test resolves to a private-network address');
        return true;
      });
      assert.deepEqual(calls, ['intranet.test']);
    });

    it('DNS rebinding: a public answer at the pre-check, then 127.0.0.1 at connect', async () => {
      const target = await startLocalServer((_req, res) => send(res, 200, 'secret'));
      try {
        const { resolve, calls } = scriptedResolver({ 'rebind.test': [['8.8.8.8'], ['127.0.0.1']] });
        await assert.rejects(safeFetch(`http://rebind.test:${target.port}/`, { resolve }), (err: unknown) => {
          assert.ok(err instanceof FetchError);
          assert.equal(err.code, 'blocked_address');
          assert.doesNotMatch(err.message, /127\.0\.0\.1|8\.8\.8\.8/, 'no resolved address in the message');
          return true;
        });
        assert.deepEqual(calls, ['rebind.test', 'rebind.test'], 'pre-check, then the connection’s own lookup');
        assert.equal(target.connections(), 0);
      } finally {
        await target.close();
      }
    });

    it('schemes other than http and https', async () => {
      for (const url of ['file:///etc/passwd', 'ftp://127.0.0.1/', 'data:text/plain,hi', 'gopher://127.0.0.1:70/_x']) {
        await assert.rejects(safeFetch(url, { policy: loopback }), fetchError('bad_scheme', false), url);
      }
      await assert.rejects(safeFetch('not a url'), fetchError('invalid_url', false));
    });
  });

  describe('with allowLoopback', () => {
    it('fetches from the loopback server', async () => {
      const res = await safeFetch(`${web.origin}/ok`, { policy: loopback });
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), 'hello');
      assert.equal(res.headers['content-type'], 'text/plain');
      assert.equal(res.finalUrl, `${web.origin}/ok`);
      assert.equal(res.redirects, 0);
    });

    it('still refuses metadata and private addresses', async () => {
      await assert.rejects(safeFetch('http://169.254.169.254/', { policy: loopback }), fetchError('blocked_address', false));
      await assert.rejects(safeFetch('http://192.168.0.1/', { policy: loopback }), fetchError('blocked_address', false));
    });

    it('reports a refused connection as retryable connect_failed', async () => {
      const gone = await startLocalServer((_req, res) => send(res, 200));
      await gone.close();
      await assert.rejects(safeFetch(`${gone.origin}/`, { policy: loopback }), fetchError('connect_failed', true));
    });
  });

  describe('redirects', () => {
    it('follows up to maxRedirects and reports where it landed', async () => {
      const res = await safeFetch(`${web.origin}/hop/5`, { policy: loopback });
      assert.equal(res.body.toString(), 'landed');
      assert.equal(res.redirects, 5);
      assert.equal(res.finalUrl, `${web.origin}/hop/0`);
    });

    it('6 hops with maxRedirects 5 is too_many_redirects', async () => {
      await assert.rejects(safeFetch(`${web.origin}/hop/6`, { policy: loopback, maxRedirects: 5 }), fetchError('too_many_redirects', false));
      await assert.rejects(safeFetch(`${web.origin}/hop/1`, { policy: loopback, maxRedirects: 0 }), fetchError('too_many_redirects', false));
    });

    it('refuses a redirect from an allowed origin to a blocked address', async () => {
      const { resolve } = scriptedResolver({ 'intranet.test': ['10.1.2.3'] });
      const targets = ['http://10.0.0.1/', 'http://169.254.169.254/latest/meta-data/', 'http://[::ffff:a00:1]/', 'http://2852039166/', 'http://intranet.test/'];
      for (const to of targets) {
        const url = `${web.origin}/redirect?to=${encodeURIComponent(to)}`;
        await assert.rejects(safeFetch(url, { policy: loopback, resolve }), fetchError('blocked_address', false), to);
      }
      await assert.rejects(safeFetch(`${web.origin}/redirect?to=${encodeURIComponent('file:///etc/passwd')}`, { policy: loopback }), fetchError('bad_scheme', false));
    });

    it('checks the address of every hop at connect time too', async () => {
      // start.test is let through by name; the hop to rebind.test passes the pre-check with a
      // public answer and then resolves to loopback when the socket connects.
      const { resolve, calls } = scriptedResolver({ 'start.test': ['127.0.0.1'], 'rebind.test': [['8.8.8.8'], ['127.0.0.1']] });
      const url = `http://start.test:${web.port}/redirect?to=${encodeURIComponent(`http://rebind.test:${web.port}/ok`)}`;
      const before = web.requests.length;
      await assert.rejects(safeFetch(url, { resolve, policy: { allowedHosts: ['start.test'] } }), fetchError('blocked_address', false));
      assert.deepEqual(
        web.requests.slice(before).map((r) => r.url),
        [`/redirect?to=${encodeURIComponent(`http://rebind.test:${web.port}/ok`)}`],
      );
      assert.deepEqual(calls, ['start.test', 'start.test', 'rebind.test', 'rebind.test']);
    });

    it('strips Authorization and Cookie on a cross-origin redirect, keeps them on the same origin', async () => {
      const headers = { Authorization: 'Bearer secret', Cookie: 'session=1', 'X-Trace': 'abc' };
      await safeFetch(`${web.origin}/redirect?to=${encodeURIComponent(`${other.origin}/landing`)}`, { policy: loopback, headers });
      const landed = other.requests.at(-1);
      assert.equal(landed?.url, '/landing');
      assert.equal(landed?.headers.authorization, undefined);
      assert.equal(landed?.headers.cookie, undefined);
      assert.equal(landed?.headers['x-trace'], 'abc');

      await safeFetch(`${web.origin}/redirect?to=/ok`, { policy: loopback, headers });
      const same = web.requests.at(-1);
      assert.equal(same?.url, '/ok');
      assert.equal(same?.headers.authorization, 'Bearer secret');
    });

    it('turns POST into GET on 303 and resends it on 307', async () => {
      const res303 = await safeFetch(`${web.origin}/redirect?status=303&to=/echo`, { policy: loopback, method: 'POST', body: 'payload' });
      assert.deepEqual(JSON.parse(res303.body.toString()), { method: 'GET' });
      await safeFetch(`${web.origin}/redirect?status=307&to=/echo`, { policy: loopback, method: 'POST', body: 'payload' });
      const resent = web.requests.at(-1);
      assert.equal(resent?.method, 'POST');
      assert.equal(resent?.body, 'payload');
    });
  });

  describe('limits', () => {
    it('refuses early when Content-Length is over maxBytes', async () => {
      await assert.rejects(safeFetch(`${web.origin}/declared-big`, { policy: loopback, maxBytes: 100 }), fetchError('too_large', false));
      const exact = await safeFetch(`${web.origin}/declared-big`, { policy: loopback, maxBytes: 1000 });
      assert.equal(exact.body.length, 1000);
    });

    it('aborts a chunked body once it passes maxBytes', async () => {
      await assert.rejects(safeFetch(`${web.origin}/chunked-big`, { policy: loopback, maxBytes: 50_000 }), fetchError('too_large', false));
      const whole = await safeFetch(`${web.origin}/chunked-big`, { policy: loopback, maxBytes: 32 * 8192 });
      assert.equal(whole.body.length, 32 * 8192);
    });

    it('times out on a server that never answers', async () => {
      const started = Date.now();
      await assert.rejects(safeFetch(`${web.origin}/hang`, { policy: loopback, timeoutMs: 200 }), fetchError('timeout', true));
      assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    });

    it('times out on a body that stalls halfway', async () => {
      await assert.rejects(safeFetch(`${web.origin}/stall`, { policy: loopback, timeoutMs: 200 }), fetchError('timeout', true));
    });

    it('fails with the caller’s reason when the caller aborts', async () => {
      const reason = new Error('shutting down');
      await assert.rejects(safeFetch(`${web.origin}/hang`, { policy: loopback, signal: AbortSignal.abort(reason) }), (err) => err === reason);
      const controller = new AbortController();
      setTimeout(() => controller.abort(reason), 50);
      await assert.rejects(safeFetch(`${web.origin}/hang`, { policy: loopback, signal: controller.signal }), (err) => err === reason);
    });
  });

  describe('statuses', () => {
    it('503 is a retryable http_status with its Retry-After; 404 is permanent', async () => {
      await assert.rejects(safeFetch(`${web.origin}/status?code=503`, { policy: loopback }), (err: unknown) => {
        assert.ok(err instanceof FetchError);
        assert.equal(err.code, 'http_status');
        assert.equal(err.status, 503);
        assert.equal(err.retryable, true);
        assert.equal(err.retryAfterMs, 7000);
        return true;
      });
      await assert.rejects(safeFetch(`${web.origin}/missing?token=s3cret`, { policy: loopback }), (err: unknown) => {
        assert.ok(err instanceof FetchError);
        assert.equal(err.code, 'http_status');
        assert.equal(err.status, 404);
        assert.equal(err.retryable, false);
        assert.equal(err.message, `127.0.0.1:${web.port} answered with HTTP status 404`);
        return true;
      });
    });

    it('accept() decides which statuses are a success', async () => {
      const res = await safeFetch(`${web.origin}/missing`, { policy: loopback, accept: (status) => status === 404 });
      assert.equal(res.status, 404);
      assert.equal(res.body.toString(), 'not found');
    });
  });

  describe('safeFetchStream', () => {
    it('streams a long URL list line by line', async () => {
      const res = await safeFetchStream(`${web.origin}/lines?n=20000`, { policy: loopback, maxBytes: 5_000_000 });
      let count = 0;
      let last = '';
      for await (const line of createInterface({ input: res.body, crlfDelay: Infinity })) {
        count += 1;
        last = line;
      }
      assert.equal(count, 20000);
      assert.equal(last, 'https://img.test/19999.jpg');
    });

    it('fails mid-stream with too_large once past maxBytes', async () => {
      const res = await safeFetchStream(`${web.origin}/chunked-big`, { policy: loopback, maxBytes: 50_000 });
      let received = 0;
      await assert.rejects(
        (async () => {
          for await (const chunk of res.body) received += (chunk as Buffer).length;
        })(),
        fetchError('too_large', false),
      );
      assert.ok(received > 0 && received <= 50_000, `received ${received}`);
    });

    it('lets the consumer stop early', async () => {
      const res = await safeFetchStream(`${web.origin}/lines?n=20000`, { policy: loopback });
      for await (const chunk of res.body) {
        assert.ok((chunk as Buffer).length > 0);
        break;
      }
      assert.equal(res.body.destroyed, true);
    });
  });
});
