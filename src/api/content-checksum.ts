import type { IncomingHttpHeaders } from 'node:http';
import { HttpError } from '../shared/errors.js';

/**
 * SHA-256 checksums as clients send them. Accepted forms of the 32 bytes: 64 hex digits (any case),
 * or base64 (standard or URL-safe alphabet, 43 characters or 44 with its `=` padding). Returned as
 * lower-case hex, the form photos.sha256 holds. Null for anything else.
 */
export function parseSha256(value: string): string | null {
  const v = value.trim();
  if (/^[0-9a-fA-F]{64}$/.test(v)) return v.toLowerCase();
  if (/^[A-Za-z0-9+/]{43}=?$/.test(v) || /^[A-Za-z0-9_-]{43}=?$/.test(v)) {
    const bytes = Buffer.from(v.replace(/=$/, ''), v.includes('-') || v.includes('_') ? 'base64url' : 'base64');
    // 43 characters carry 258 bits: the last character's 2 spare bits must be zero, or this is not canonical base64 of 32 bytes.
    if (bytes.length !== 32 || bytes.toString('base64').slice(0, 43) !== v.slice(0, 43).replace(/-/g, '+').replace(/_/g, '/')) return null;
    return bytes.toString('hex');
  }
  return null;
}

const FORMS = 'expected 64 hex digits or 44 base64 characters';

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function invalid(message: string): HttpError {
  return new HttpError(400, 'invalid_checksum', message);
}

/**
 * `Digest: SHA-256=<base64>[, MD5=...]` (RFC 3230): comma-separated `algorithm=value`, names
 * case-insensitive. Other algorithms are ignored, as the RFC allows.
 */
function fromDigest(value: string): string | null {
  let found: string | null = null;
  for (const item of value.split(',')) {
    const at = item.indexOf('=');
    if (at < 1) continue;
    if (item.slice(0, at).trim().toLowerCase() !== 'sha-256') continue;
    const sha = parseSha256(item.slice(at + 1));
    if (!sha) throw invalid(`Digest: the sha-256 value is not a SHA-256 (${FORMS})`);
    found = sha;
  }
  return found;
}

/**
 * `Repr-Digest: sha-256=:<base64>:[, sha-512=:...:]` (RFC 9530, a structured-field dictionary whose
 * values are byte sequences). Members other than sha-256 are ignored; parameters are dropped.
 */
function fromReprDigest(value: string): string | null {
  let found: string | null = null;
  for (const item of value.split(',')) {
    const at = item.indexOf('=');
    if (at < 1) continue;
    if (item.slice(0, at).trim() !== 'sha-256') continue;
    const m = /^\s*:([A-Za-z0-9+/=]*):\s*(;.*)?$/.exec(item.slice(at + 1));
    const sha = m?.[1] !== undefined ? parseSha256(m[1]) : null;
    if (!sha) throw invalid(`Repr-Digest: the sha-256 member is not a byte sequence of 32 bytes (sha-256=:<base64>:)`);
    found = sha;
  }
  return found;
}

/**
 * The SHA-256 an upload declares for its bytes, from X-Content-SHA256 (hex or base64), Digest or
 * Repr-Digest (and, for multipart uploads, a `sha256` field before the file), or null when it
 * declares none. Several declarations must agree. A malformed one is a 400 `invalid_checksum`: a
 * checksum the client meant to send but that cannot be read would otherwise check nothing.
 */
export function declaredSha256(headers: IncomingHttpHeaders, extra?: { field: string; value: string }): string | null {
  const found: { from: string; sha: string }[] = [];
  const x = header(headers, 'x-content-sha256');
  if (x !== undefined) {
    const sha = parseSha256(x);
    if (!sha) throw invalid(`X-Content-SHA256: not a SHA-256 (${FORMS})`);
    found.push({ from: 'X-Content-SHA256', sha });
  }
  const digest = header(headers, 'digest');
  const fromD = digest === undefined ? null : fromDigest(digest);
  if (fromD) found.push({ from: 'Digest', sha: fromD });
  const repr = header(headers, 'repr-digest');
  const fromR = repr === undefined ? null : fromReprDigest(repr);
  if (fromR) found.push({ from: 'Repr-Digest', sha: fromR });
  if (extra) {
    const sha = parseSha256(extra.value);
    if (!sha) throw invalid(`${extra.field}: not a SHA-256 (${FORMS})`);
    found.push({ from: extra.field, sha });
  }
  const first = found[0];
  if (!first) return null;
  const other = found.find((f) => f.sha !== first.sha);
  if (other) throw invalid(`${first.from} and ${other.from} declare different SHA-256 checksums`);
  return first.sha;
}
