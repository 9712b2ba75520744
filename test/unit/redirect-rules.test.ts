import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { redirectedRequest, type OutgoingRequest } from '../../src/shared/net/redirect-rules.js';

describe('redirect rules', () => {
  const post: OutgoingRequest = {
    method: 'POST',
    headers: { authorization: 'Bearer t', cookie: 'a=b', 'content-type': 'application/json', 'x-trace': '1' },
    body: '{"a":1}',
  };
  const a = new URL('https://a.test/x');

  it('303 and 301/302 after POST become a bodiless GET; 307/308 resend method and body', () => {
    for (const status of [301, 302, 303]) {
      const next = redirectedRequest(post, status, a, new URL('https://a.test/y'));
      assert.equal(next.method, 'GET', String(status));
      assert.equal(next.body, undefined);
      assert.equal(next.headers['content-type'], undefined);
      assert.equal(next.headers.authorization, 'Bearer t', 'same origin keeps credentials');
    }
    for (const status of [307, 308]) {
      const next = redirectedRequest(post, status, a, new URL('https://a.test/y'));
      assert.deepEqual(next, post);
    }
    assert.equal(redirectedRequest({ ...post, method: 'PUT' }, 302, a, a).method, 'PUT');
    assert.equal(redirectedRequest({ ...post, method: 'HEAD', body: undefined }, 303, a, a).method, 'HEAD');
  });

  it('drops credentials when scheme, host or port changes', () => {
    for (const to of ['https://b.test/', 'http://a.test/x', 'https://a.test:8443/x']) {
      const next = redirectedRequest(post, 307, a, new URL(to));
      assert.equal(next.headers.authorization, undefined, to);
      assert.equal(next.headers.cookie, undefined, to);
      assert.equal(next.headers['x-trace'], '1', to);
    }
  });
});
