import { z } from 'zod';

/**
 * A batch's URLs, read and checked one at a time whatever their number: from the request body or
 * from a list fetched from the customer's server (a text file with one URL per line, or a JSON
 * array of strings), streamed so that no more than one URL (and one chunk of the stream) is held.
 */

/** Refused input, naming where: "line 7: scheme ftp: is not http or https". The API answers 400. */
export class BatchInputError extends Error {
  override readonly name = 'BatchInputError';
  constructor(
    readonly code: 'invalid_batch' | 'invalid_url' | 'too_many_urls' | 'list_unreadable',
    message: string,
  ) {
    super(message);
  }
}

export interface ListedUrl {
  /** 1-based: the line of a text list, or the position in a JSON array or in the body's `urls`. */
  line: number;
  url: string;
}

/** One URL of a batch: http(s), a host, no credentials, at most maxLength characters. */
export function batchUrlSchema(maxLength: number) {
  return z.string().superRefine((raw, ctx) => {
    const why = urlProblem(raw, maxLength);
    if (why) ctx.addIssue({ code: 'custom', message: why });
  });
}

function urlProblem(raw: string, maxLength: number): string | null {
  if (raw.length === 0) return 'empty';
  if (raw.length > maxLength) return `longer than ${maxLength} characters`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'not a valid URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `scheme ${url.protocol.replace(/:$/, '')}: is not http or https`;
  if (url.username !== '' || url.password !== '') return 'URLs with credentials are not accepted';
  if (url.hostname === '') return 'no host';
  return null;
}

/** Checks one listed URL; throws BatchInputError naming its line. */
export function checkListedUrl(entry: ListedUrl, schema: z.ZodType<string>): string {
  const r = schema.safeParse(entry.url);
  if (!r.success) throw new BatchInputError('invalid_url', `line ${entry.line}: ${r.error.issues[0]?.message ?? 'invalid URL'}`);
  return r.data;
}

/**
 * The URLs of a list, in order, with their line numbers: a JSON array when its first
 * non-whitespace character is `[`, else text with one URL per line (blank lines are skipped but
 * counted, CR LF accepted). Stops with BatchInputError past maxUrls or at anything that is not a
 * URL string; a single line or string longer than maxLength is refused without being held whole.
 */
export async function* readUrlList(source: AsyncIterable<Buffer | string>, opts: { maxUrls: number; maxLength: number }): AsyncGenerator<ListedUrl> {
  const schema = batchUrlSchema(opts.maxLength);
  let count = 0;
  const take = (entry: ListedUrl): ListedUrl => {
    count += 1;
    if (count > opts.maxUrls) throw new BatchInputError('too_many_urls', `line ${entry.line}: more than ${opts.maxUrls} URLs`);
    return { line: entry.line, url: checkListedUrl(entry, schema) };
  };
  const chars = decodeChunks(source);
  const first = await firstNonSpace(chars);
  if (first.char === null) return;
  if (first.char === '[') {
    for await (const entry of jsonStrings(chars.iterator, first.rest, opts.maxLength)) yield take(entry);
  } else {
    for await (const entry of textLines(chars.iterator, first.rest, opts.maxLength)) yield take(entry);
  }
}

interface CharSource {
  iterator: AsyncIterator<string>;
}

function decodeChunks(source: AsyncIterable<Buffer | string>): CharSource {
  const decoder = new TextDecoder('utf-8');
  async function* text(): AsyncGenerator<string> {
    for await (const chunk of source) {
      const s = typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
      if (s.length > 0) yield s;
    }
    const tail = decoder.decode();
    if (tail.length > 0) yield tail;
  }
  return { iterator: text() };
}

/** The first non-whitespace character, and the text from it on (of its chunk). */
async function firstNonSpace(src: CharSource): Promise<{ char: string | null; rest: string }> {
  for (;;) {
    const next = await src.iterator.next();
    if (next.done) return { char: null, rest: '' };
    const text = next.value.replace(/^\uFEFF/, '');
    const i = text.search(/\S/);
    if (i >= 0) return { char: text[i]!, rest: text.slice(i) };
  }
}

async function* textLines(it: AsyncIterator<string>, start: string, maxLength: number): AsyncGenerator<ListedUrl> {
  let line = 1;
  let current = '';
  let tooLong = false;
  const finish = (): ListedUrl | null => {
    const url = current.replace(/\r$/, '').trim();
    const at = line;
    if (tooLong) throw new BatchInputError('invalid_url', `line ${at}: longer than ${maxLength} characters`);
    current = '';
    line += 1;
    return url === '' ? null : { line: at, url };
  };
  let text: string | null = start;
  while (text !== null) {
    let from = 0;
    for (let nl = text.indexOf('\n', from); nl >= 0; nl = text.indexOf('\n', from)) {
      current += text.slice(from, nl);
      if (current.length > maxLength + 1) tooLong = true;
      from = nl + 1;
      const entry = finish();
      if (entry) yield entry;
    }
    current += text.slice(from);
    // A line that never ends is refused once it is past the limit, not held.
    if (current.length > maxLength + 1) throw new BatchInputError('invalid_url', `line ${line}: longer than ${maxLength} characters`);
    const next = await it.next();
    text = next.done ? null : next.value;
  }
  const entry = finish();
  if (entry) yield entry;
}

/**
 * A JSON array of strings, tokenised as it streams: every element must be a string (of at most
 * maxLength characters once decoded); anything else (a number, an object, nesting, text after
 * the closing bracket) is refused with its position. Written for exactly this shape so that no
 * input, however crafted, makes it hold more than one URL.
 */
async function* jsonStrings(it: AsyncIterator<string>, start: string, maxLength: number): AsyncGenerator<ListedUrl> {
  let text = start;
  let i = 1; // past '['
  let index = 0;
  let state: 'value' | 'valueOrEnd' | 'commaOrEnd' | 'done' = 'valueOrEnd';
  const bad = (what: string) => new BatchInputError('invalid_url', `line ${index + 1}: ${what}`);
  const more = async (): Promise<boolean> => {
    const next = await it.next();
    if (next.done) return false;
    text = next.value;
    i = 0;
    return true;
  };
  for (;;) {
    if (i >= text.length) {
      if (!(await more())) break;
      continue;
    }
    const c = text[i]!;
    if (c === ' ' || c === '\n' || c === '\r' || c === '\t') {
      i += 1;
      continue;
    }
    if (state === 'done') throw bad('text after the end of the JSON array');
    if (state === 'commaOrEnd') {
      if (c === ',') state = 'value';
      else if (c === ']') state = 'done';
      else throw bad('expected "," or "]" in the JSON array');
      i += 1;
      continue;
    }
    if (c === ']' && state === 'valueOrEnd') {
      state = 'done';
      i += 1;
      continue;
    }
    if (c !== '"') throw bad('not a string (a JSON list of URLs holds strings only)');
    i += 1;
    // One string, escapes decoded, capped.
    let out = '';
    for (;;) {
      if (i >= text.length && !(await more())) throw bad('unterminated string');
      const ch = text[i]!;
      if (ch === '"') {
        i += 1;
        break;
      }
      if (ch === '\\') {
        if (i + 1 >= text.length) {
          const carry = text.slice(i);
          if (!(await more())) throw bad('unterminated string');
          text = carry + text;
        }
        const e = text[i + 1]!;
        const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (e in simple) {
          out += simple[e];
          i += 2;
        } else if (e === 'u') {
          while (i + 6 > text.length) {
            const carry = text.slice(i);
            if (!(await more())) throw bad('unterminated string');
            text = carry + text;
          }
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw bad('invalid \\u escape');
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else {
          throw bad('invalid escape in a string');
        }
      } else {
        if (ch < ' ') throw bad('control character in a string');
        out += ch;
        i += 1;
      }
      if (out.length > maxLength) throw bad(`longer than ${maxLength} characters`);
    }
    index += 1;
    yield { line: index, url: out };
    state = 'commaOrEnd';
  }
  if (state !== 'done') throw new BatchInputError('invalid_url', `line ${index + 1}: the JSON array is not closed`);
}
