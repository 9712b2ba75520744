/**
 * A client-supplied file name is data to display, never a path: keep the last path segment,
 * drop control characters and bidi overrides, bound the length. Returns null when nothing is left.
 */
export function sanitizeFilename(input: string | undefined | null): string | null {
  if (!input) return null;
  let name = input;
  try {
    name = decodeURIComponent(name);
  } catch {
    // not percent-encoded: use as is
  }
  name = name.split(/[/\\]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  name = name.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, '').trim();
  if (name === '.' || name === '..') return null;
  name = name.replace(/^\.+/, '');
  if (name.length > 255) name = name.slice(0, 255);
  return name.length > 0 ? name : null;
}
