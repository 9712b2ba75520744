import { z } from 'zod';
import { coerceError } from '../shared/errors.js';
import { GeocoderRejectedError, GeocoderUnavailableError } from './errors.js';
import { distanceKm, isTown } from './place-rules.js';

/** The part of a GeoNames answer the geocoder keeps (and caches): a town, without the distance, which depends on the photo. */
export interface RemoteTown {
  geonameId: number;
  name: string;
  admin1: string | null;
  countryCode: string;
  lat: number;
  lon: number;
}

/** A quota or account error: nobody sharing the username should call until pauseMs has passed. */
export interface QuotaAnswer {
  quota: { code: number; message: string; pauseMs: number };
}

export type NearbyAnswer = { town: RemoteTown | null } | QuotaAnswer;

export interface GeoNamesClientOptions {
  baseUrl: string;
  username: string;
  timeoutMs: number;
  radiusKm: number;
  /** Rows asked for, so that the nearest town is still there after PPLX etc. are dropped. */
  maxRows: number;
}

const numeric = z.union([z.number(), z.string().trim().min(1)]).pipe(z.coerce.number()).pipe(z.number().finite());
const Row = z.object({
  geonameId: z.number().int().positive(),
  name: z.string().min(1),
  lat: numeric,
  lng: numeric,
  countryCode: z.string().length(2),
  adminName1: z.string().optional(),
  adminCode1: z.string().optional(),
  fcode: z.string().optional(),
});
const Body = z.union([
  z.object({ geonames: z.array(z.unknown()) }),
  z.object({ status: z.object({ value: z.number(), message: z.string().optional() }) }),
]);

// GeoNames' error codes (web service docs, "exception codes"): 10 authorization (unknown user,
// account not enabled), 18 daily, 19 hourly, 20 weekly credit limit; 13 database timeout and 22
// server overloaded are transient; 15 "no result found" is an answer.
const QUOTA_CODES = new Set([10, 18, 19, 20]);
const TRANSIENT_CODES = new Set([12, 13, 22]);
const NO_RESULT = 15;

/**
 * One findNearbyPlaceName call, classified: a town (or none), a quota answer, or a typed error.
 * Never retries: retry, pause and budget belong to the caller, who shares them across processes.
 */
export async function findNearbyTown(opts: GeoNamesClientOptions, lat: number, lon: number): Promise<NearbyAnswer> {
  const url = new URL('findNearbyPlaceNameJSON', opts.baseUrl.endsWith('/') ? opts.baseUrl : `${opts.baseUrl}/`);
  url.search = new URLSearchParams({
    lat: lat.toFixed(5),
    lng: lon.toFixed(5),
    username: opts.username,
    radius: String(opts.radiusKm),
    maxRows: String(opts.maxRows),
    style: 'FULL',
    cities: 'cities1000',
  }).toString();
  const where = `GeoNames ${url.host}`;
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(opts.timeoutMs), headers: { accept: 'application/json' } });
    text = await res.text();
  } catch (err) {
    const e = coerceError(err);
    const what = e.name === 'TimeoutError' ? `no answer within ${opts.timeoutMs} ms` : `${e.message}${causeCode(e)}`;
    throw new GeocoderUnavailableError(`${where}: ${what}`, { cause: e });
  }
  if (res.status === 429) return { quota: { code: 429, message: `${where}: HTTP 429`, pauseMs: retryAfterMs(res.headers.get('retry-after')) } };
  if (res.status >= 500 || res.status === 408) throw new GeocoderUnavailableError(`${where}: HTTP ${res.status}`);
  if (res.status >= 400) throw new GeocoderRejectedError(`${where}: HTTP ${res.status}: ${text.slice(0, 200)}`);
  let body: z.infer<typeof Body>;
  try {
    body = Body.parse(JSON.parse(text));
  } catch (err) {
    throw new GeocoderUnavailableError(`${where}: unreadable answer (${text.slice(0, 80)})`, { cause: err });
  }
  if ('status' in body) {
    const { value: code, message = '' } = body.status;
    if (QUOTA_CODES.has(code)) return { quota: { code, message, pauseMs: quotaPauseMs(code, new Date()) } };
    if (code === NO_RESULT) return { town: null };
    if (TRANSIENT_CODES.has(code)) throw new GeocoderUnavailableError(`${where}: error ${code}: ${message}`);
    throw new GeocoderRejectedError(`${where}: error ${code}: ${message}`);
  }
  return { town: nearestTown(body.geonames, lat, lon) };
}

/** The nearest row that is a town by the offline geocoder's rules; rows that do not parse are skipped, not fatal. */
function nearestTown(rows: unknown[], lat: number, lon: number): RemoteTown | null {
  let best: { town: RemoteTown; km: number } | null = null;
  for (const raw of rows) {
    const row = Row.safeParse(raw);
    if (!row.success) continue;
    const r = row.data;
    if (r.fcode && !isTown(r.fcode, r.countryCode)) continue;
    const km = distanceKm(lat, lon, r.lat, r.lng);
    if (best && best.km <= km) continue;
    // adminCode1 "00" is GeoNames' "no first-level division"; its adminName1 is then empty or a placeholder.
    const admin1 = r.adminCode1 === '00' ? null : r.adminName1 || null;
    best = { km, town: { geonameId: r.geonameId, name: r.name, admin1, countryCode: r.countryCode.toUpperCase(), lat: r.lat, lon: r.lng } };
  }
  return best?.town ?? null;
}

/**
 * How long to stop calling after a quota answer. GeoNames does not document when its windows
 * reset; this assumes UTC hour, day and ISO week boundaries. If that is wrong the first call after
 * the pause gets the same answer and pauses again: one wasted call, not a burst.
 */
export function quotaPauseMs(code: number, now: Date): number {
  const t = now.getTime();
  const next = new Date(t);
  if (code === 19) next.setUTCHours(now.getUTCHours() + 1, 0, 0, 0);
  else if (code === 18) next.setUTCHours(24, 0, 0, 0);
  else if (code === 20) next.setUTCHours(24 * (((8 - now.getUTCDay()) % 7) || 7), 0, 0, 0);
  // 10: a wrong or disabled username. Nothing resets it but an operator; probe once an hour.
  else return 3_600_000;
  // A minute of slack: clocks differ, and a call a second early would pause again for nothing.
  return next.getTime() - t + 60_000;
}

function retryAfterMs(header: string | null): number {
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds > 0) return Math.min(seconds, 86_400) * 1000;
  const date = header ? Date.parse(header) : NaN;
  return Number.isFinite(date) ? Math.max(1000, Math.min(date - Date.now(), 86_400_000)) : 60_000;
}

/** fetch says only "fetch failed" and hides ECONNREFUSED and friends in cause: they are what an operator needs to see. */
function causeCode(err: Error): string {
  const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
  if (typeof cause?.code === 'string') return ` (${cause.code})`;
  return typeof cause?.message === 'string' && cause.message ? ` (${cause.message})` : '';
}
