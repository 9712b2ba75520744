/**
 * Text that Postgres will store. Client- and file-derived strings (EXIF, file names, failure
 * reasons) reach text and jsonb columns, and Postgres refuses two things JavaScript strings may
 * hold, failing the whole statement:
 *  - a lone surrogate (UTF-16 decoded from a file, or a pair cut in half by a length limit):
 *    JSON.stringify writes it as `\ud800`, which jsonb rejects (22P02); in a text parameter pg
 *    silently turns it into U+FFFD;
 *  - NUL: text rejects it (22021), jsonb rejects `\u0000` (22P05).
 * Every such string is made with these helpers, where it is made.
 */

/** Lone surrogates replaced by U+FFFD (String.prototype.toWellFormed); well-formed input is returned as is. */
export function wellFormed(s: string): string {
  return s.toWellFormed();
}

/** NUL characters removed: neither text nor jsonb can hold them. */
export function withoutNul(s: string): string {
  return s.includes('\0') ? s.replaceAll('\0', '') : s;
}

const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/**
 * At most `maxCodeUnits` UTF-16 code units, `ellipsis` included when the text is cut. The cut
 * never falls between the two halves of a surrogate pair: a pair that does not fit goes whole.
 * (It may still fall inside a grapheme cluster, a flag or a family emoji: that shows, but is valid.)
 */
export function truncateText(s: string, maxCodeUnits: number, ellipsis = ''): string {
  if (s.length <= maxCodeUnits) return s;
  let end = Math.max(0, maxCodeUnits - ellipsis.length);
  if (end > 0 && isHigh(s.charCodeAt(end - 1)) && isLow(s.charCodeAt(end))) end--;
  return `${s.slice(0, end)}${ellipsis}`;
}

/** A string as Postgres text or a jsonb string will take it: well-formed, without NUL, optionally bounded. */
export function dbText(s: string, maxCodeUnits = Infinity, ellipsis = ''): string {
  return truncateText(withoutNul(wellFormed(s)), maxCodeUnits, ellipsis);
}

/**
 * JSON text for a jsonb parameter: JSON.stringify with every string value and every object key
 * made dbText, at any depth. What JSON.stringify itself does is unchanged (toJSON, undefined and
 * functions left out, non-finite numbers as null).
 */
export function dbJsonText(value: unknown): string | undefined {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'string') return dbText(v);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const keys = Object.keys(v);
    if (keys.every((k) => dbText(k) === k)) return v;
    // Rebuilt with clean keys; the replacer then visits its values as usual.
    const out: Record<string, unknown> = {};
    for (const k of keys) out[dbText(k)] = (v as Record<string, unknown>)[k];
    return out;
  }) as string | undefined;
}
