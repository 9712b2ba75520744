import { z } from 'zod';
import { HttpError } from '../shared/errors.js';

/**
 * Strict parsing of what clients put in URLs. Every value that reaches SQL (or the broker) is
 * checked here first, so a value Postgres would refuse is a 400 and never a 500.
 */

/** Any well-formed UUID (the API's ids are v4; Postgres' uuid type takes them all). */
export const uuidParam = z.uuid();

/**
 * A whole number in the query string: digits only (no sign, exponent, hex, spaces or decimals,
 * which Number() would accept), within [min, max]. Absent or empty (`?limit=`, as a form sends an
 * unset field) means `fallback`. A repeated parameter arrives as an array and is refused.
 */
export function intParam(min: number, max: number, fallback: number): z.ZodType<number> {
  return z.preprocess(
    (v) => (v === undefined || v === '' ? String(fallback) : v),
    z
      .string()
      .regex(/^\d{1,9}$/, 'expected a whole number')
      .transform(Number)
      .pipe(z.number().int().min(min).max(max)),
  );
}

/** An enum filter where empty means "not set". */
export function optionalEnumParam<T extends readonly [string, ...string[]]>(values: T) {
  return z.preprocess((v) => (v === '' ? undefined : v), z.enum(values).optional());
}

export function queryError(code: string, error: z.ZodError): HttpError {
  return new HttpError(400, code, error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '));
}

/**
 * A keyset position as the API returns it: Postgres' UTC timestamp text with microseconds
 * (`positionOf` in the data layer), e.g. 2025-01-01T00:00:00.123456Z. Checked field by field, so a
 * month 13, February 30 or year 10000 never reaches a ::timestamptz cast.
 */
const POSITION = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z$/;

export function isListPosition(text: string): boolean {
  const m = POSITION.exec(text);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (year < 1 || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return false;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

export interface ListCursor {
  createdAt: string;
  id: string;
}

const MAX_CURSOR_LENGTH = 200;

export function encodeCursor(c: ListCursor): string {
  return Buffer.from(JSON.stringify([c.createdAt, c.id])).toString('base64url');
}

/** The position a cursor names, or a 400: only exactly what encodeCursor makes is taken. */
export function decodeCursor(cursor: string): ListCursor {
  const invalid = new HttpError(400, 'invalid_cursor', 'cursor is not one this API returned');
  if (cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid;
  }
  if (!Array.isArray(parsed) || parsed.length !== 2) throw invalid;
  const [createdAt, id] = parsed as unknown[];
  if (typeof createdAt !== 'string' || typeof id !== 'string' || !isListPosition(createdAt) || !uuidParam.safeParse(id).success) throw invalid;
  return { createdAt, id };
}

/** A place list position: the newest photo's time there (as Postgres gives it) and the GeoNames id. */
export interface PlaceCursor {
  at: string;
  id: number;
}

export function encodePlaceCursor(c: PlaceCursor): string {
  return Buffer.from(JSON.stringify([c.at, c.id])).toString('base64url');
}

export function decodePlaceCursor(cursor: string): PlaceCursor {
  const invalid = new HttpError(400, 'invalid_cursor', 'cursor is not one this API returned');
  if (cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid;
  }
  if (!Array.isArray(parsed) || parsed.length !== 2) throw invalid;
  const [at, id] = parsed as unknown[];
  if (typeof at !== 'string' || !isListPosition(at) || typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) throw invalid;
  return { at, id };
}

/** A GeoNames id in a path: digits only, within what the column holds. */
export const geonameIdParam = z
  .string()
  .regex(/^[1-9]\d{0,14}$/)
  .transform(Number);
