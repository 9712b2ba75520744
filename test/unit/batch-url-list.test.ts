import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BatchInputError, readUrlList, type ListedUrl } from '../../src/batches/url-list.js';
import { shouldStartCall } from '../../src/batches/call-plan.js';

async function read(chunks: string[], opts = { maxUrls: 100, maxLength: 64 }): Promise<ListedUrl[]> {
  const out: ListedUrl[] = [];
  async function* src() {
    for (const c of chunks) yield Buffer.from(c);
  }
  for await (const e of readUrlList(src(), opts)) out.push(e);
  return out;
}

const refused = (pattern: RegExp) => (err: unknown) => err instanceof BatchInputError && pattern.test(err.message);

describe('batch URL lists', () => {
  it('reads a text list line by line across chunk borders, with line numbers, CR LF and blank lines', async () => {
    const urls = await read(['\uFEFFhttp://a.example/1.jpg\r\nhttps://b.exa', 'mple/2.jpg\n\n  http://c.example/3.jpg  \n']);
    assert.deepEqual(urls, [
      { line: 1, url: 'http://a.example/1.jpg' },
      { line: 2, url: 'https://b.example/2.jpg' },
      { line: 4, url: 'http://c.example/3.jpg' },
    ]);
  });

  it('reads a JSON array of strings split anywhere, escapes included', async () => {
    const text = ' [ "http://a.example/1.jpg" , "https://b.example/\\u00e9\\/2.jpg","http://c.example/a\\"b"]\n';
    for (let cut = 1; cut < text.length; cut += 3) {
      const urls = await read([text.slice(0, cut), text.slice(cut)]);
      assert.deepEqual(urls.map((u) => u.url), ['http://a.example/1.jpg', 'https://b.example/é/2.jpg', 'http://c.example/a"b'], `cut at ${cut}`);
      assert.deepEqual(urls.map((u) => u.line), [1, 2, 3]);
    }
    assert.deepEqual(await read(['[]']), []);
    assert.deepEqual(await read(['']), []);
  });

  it('names the line of a malformed URL, a non-http(s) scheme, credentials, an over-long line', async () => {
    await assert.rejects(read(['http://a.example/\nnot a url\n']), refused(/^line 2: not a valid URL$/));
    await assert.rejects(read(['http://a.example/\n\nftp://b.example/x\n']), refused(/^line 3: scheme ftp: is not http or https$/));
    await assert.rejects(read(['["http://a.example/", "file:///etc/passwd"]']), refused(/^line 2: scheme file: is not http or https$/));
    await assert.rejects(read(['http://user:pw@a.example/\n']), refused(/^line 1: URLs with credentials/));
    await assert.rejects(read([`http://a.example/${'x'.repeat(100)}\n`]), refused(/^line 1: longer than 64 characters$/));
    await assert.rejects(read([`["http://a.example/${'x'.repeat(100)}"]`]), refused(/^line 1: longer than 64 characters$/));
  });

  it('refuses a list longer than the limit, naming the first line over it', async () => {
    const lines = Array.from({ length: 6 }, (_, i) => `http://a.example/${i}`).join('\n');
    await assert.rejects(read([lines], { maxUrls: 5, maxLength: 64 }), refused(/^line 6: more than 5 URLs$/));
    assert.equal((await read([lines], { maxUrls: 6, maxLength: 64 })).length, 6);
  });

  it('refuses anything in a JSON list that is not a URL string', async () => {
    await assert.rejects(read(['["http://a.example/", 5]']), refused(/^line 2: not a string/));
    await assert.rejects(read(['[["http://a.example/"]]']), refused(/^line 1: not a string/));
    await assert.rejects(read(['["http://a.example/" "http://b.example/"]']), refused(/expected "," or "]"/));
    await assert.rejects(read(['["http://a.example/"] x']), refused(/text after the end/));
    await assert.rejects(read(['["http://a.example/"']), refused(/not closed/));
    await assert.rejects(read(['["http://a.example/']), refused(/unterminated string/));
  });
});

describe('when a call to the batch API starts', () => {
  it('waits for minBatchSize ready images before the first call, unless nothing more can come', () => {
    assert.equal(shouldStartCall({ ready: 9, moreToCome: true, callsSoFar: 0, minBatchSize: 10 }), false);
    assert.equal(shouldStartCall({ ready: 10, moreToCome: true, callsSoFar: 0, minBatchSize: 10 }), true);
    assert.equal(shouldStartCall({ ready: 3, moreToCome: false, callsSoFar: 0, minBatchSize: 10 }), true, 'a batch smaller than X');
    assert.equal(shouldStartCall({ ready: 0, moreToCome: false, callsSoFar: 0, minBatchSize: 10 }), false);
  });

  it('starts every later call with whatever became ready', () => {
    assert.equal(shouldStartCall({ ready: 1, moreToCome: true, callsSoFar: 3, minBatchSize: 10 }), true);
    assert.equal(shouldStartCall({ ready: 0, moreToCome: true, callsSoFar: 3, minBatchSize: 10 }), false);
  });
});
