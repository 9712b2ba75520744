import { truncateText, wellFormed } from '../shared/text.js';

/**
 * A client-supplied file name is data to display, never a path: keep the last path segment,
 * drop control characters (NUL among them) and bidi overrides, make it well-formed, bound the
 * length without cutting a surrogate pair. Returns null when nothing is left.
 */
export function sanitizeFilename(input: string | undefined | null): string | null {
  if (!input) return null;
  let name = input;
  try {
    name = decodeURIComponent(name);
  } catch {
    // not percent-encoded: use as is
  }
  name = wellFormed(name).split(/[/\\]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  name = name.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, '').trim();
  if (name === '.' || name === '..') return null;
  name = name.replace(/^\.+/, '');
  name = truncateText(name, 255);
  return name.length > 0 ? name : null;
}
