/**
 * Offline reverse geocoding, two ways, each measured in a fresh child process so that load time
 * and memory are what one geocode worker would pay:
 *   kdbush    the chosen one (src/places): bundled GeoNames towns in a k-d tree in every process
 *   postgres  Immich's way: the same towns imported once into Postgres (cube + earthdistance,
 *             GiST on ll_to_earth), queried over one connection per process
 *
 *   npx tsx bench/geocoder.ts              # both, 20,000 lookups each
 *   npx tsx bench/geocoder.ts --n 5000 --skip postgres
 *
 * Needs Postgres on 127.0.0.1:5432 (user postgres, trust) for the second; it creates and drops a
 * scratch database. Lookups run one at a time (a stage handler awaits each), on two workloads:
 * "photos" = random towns of the data moved by up to ±0.2° (where photos are taken), "globe" =
 * uniform points on the sphere (mostly sea: the slow path, with the country check, for kdbush).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { cpuMs } from './lib/proc.js';

const SELF = fileURLToPath(import.meta.url);
const PG = { host: '127.0.0.1', port: 5432, user: 'postgres' };

interface Args {
  n: number;
  skip: Set<string>;
  child: string | null;
  db: string | null;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { n: 20_000, skip: new Set(), child: null, db: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1] ?? '';
    if (a === '--help') {
      console.log('npx tsx bench/geocoder.ts [--n 20000] [--skip kdbush,postgres]');
      process.exit(0);
    }
    if (a === '--n') args.n = Number(v);
    else if (a === '--skip') for (const s of v.split(',')) args.skip.add(s);
    else if (a === '--child') args.child = v;
    else if (a === '--db') args.db = v;
    else continue;
    i++;
  }
  return args;
}

interface Workload {
  name: string;
  points: [number, number][];
}

interface ChildReport {
  approach: string;
  loadMs: number;
  heapDeltaMb: number;
  rssDeltaMb: number;
  workloads: { name: string; n: number; perSecond: number; cpuMsPerLookup: number; dbCpuMsPerLookup?: number; found: number }[];
  notes: string[];
}

/** Deterministic pseudo-random numbers, so both approaches get the same points. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function workloads(n: number): Promise<Workload[]> {
  const { readPlaceTable } = await import('../src/places/geonames-dump-reader.js');
  const table = await readPlaceTable();
  const r = rng(42);
  const photos: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    const row = Math.floor(r() * table.count);
    const lat = Math.max(-90, Math.min(90, (table.lats[row] ?? 0) + (r() - 0.5) * 0.4));
    photos.push([lat, ((((table.lons[row] ?? 0) + (r() - 0.5) * 0.4 + 180) % 360) + 360) % 360 - 180]);
  }
  const globe: [number, number][] = [];
  for (let i = 0; i < n; i++) globe.push([(Math.asin(2 * r() - 1) * 180) / Math.PI, r() * 360 - 180]);
  return [
    { name: 'photos', points: photos },
    { name: 'globe', points: globe },
  ];
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** After a tick: what an async function just returned is still referenced until then, and a GC now would count it. */
async function mem(): Promise<{ heap: number; rss: number }> {
  await new Promise((r) => setTimeout(r, 50));
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed + m.arrayBuffers, rss: m.rss };
}

async function timeLookups(name: string, points: [number, number][], lookup: (lat: number, lon: number) => Promise<boolean>, backendPid?: number) {
  // Warm-up: JIT and, for Postgres, the plan cache and the index pages.
  for (const [lat, lon] of points.slice(0, 500)) await lookup(lat, lon);
  const cpu0 = process.cpuUsage();
  const db0 = backendPid ? (cpuMs(backendPid) ?? 0) : 0;
  const t0 = performance.now();
  let found = 0;
  for (const [lat, lon] of points) if (await lookup(lat, lon)) found++;
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const out: ChildReport['workloads'][number] = {
    name,
    n: points.length,
    perSecond: Math.round((points.length / ms) * 1000),
    cpuMsPerLookup: (cpu.user + cpu.system) / 1000 / points.length,
    found,
  };
  if (backendPid) out.dbCpuMsPerLookup = ((cpuMs(backendPid) ?? 0) - db0) / points.length;
  return out;
}

async function childKdbush(n: number): Promise<ChildReport> {
  const loads = await workloads(n);
  // The workload generator read the table once: drop it before measuring the geocoder's own load.
  const before = await mem();
  const t0 = performance.now();
  const { createOfflineGeocoder } = await import('../src/places/offline-geocoder.js');
  const geocoder = await createOfflineGeocoder();
  const loadMs = performance.now() - t0;
  const after = await mem();
  const results = [];
  for (const w of loads) results.push(await timeLookups(w.name, w.points, async (lat, lon) => (await geocoder.lookup(lat, lon)).place !== null));
  return {
    approach: 'kdbush (in process)',
    loadMs,
    heapDeltaMb: (after.heap - before.heap) / 1e6,
    rssDeltaMb: (after.rss - before.rss) / 1e6,
    workloads: results,
    notes: ['load = import of the modules (country-coder borders included) + reading and indexing cities500.txt', 'lookup = full lookup(): validation, nearest town, country check when none within 25 km'],
  };
}

interface NearRow {
  geoname_id: number;
  name: string;
  admin1: string | null;
  country_code: string;
  distance_m: number;
}

const NEAREST_SQL = `
  SELECT geoname_id, name, admin1, country_code, earth_distance(ll_to_earth($1, $2), ll_to_earth(lat, lon)) AS distance_m
    FROM places
   WHERE earth_box(ll_to_earth($1, $2), $3) @> ll_to_earth(lat, lon)
     AND earth_distance(ll_to_earth($1, $2), ll_to_earth(lat, lon)) <= $3
   ORDER BY distance_m
   LIMIT 1`;

async function childPostgres(n: number, db: string): Promise<ChildReport> {
  const loads = await workloads(n);
  const before = await mem();
  const t0 = performance.now();
  const client = new pg.Client({ ...PG, database: db });
  client.on('error', () => {}); // the bench ends the connection itself; a late error is noise
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const loadMs = performance.now() - t0;
  const after = await mem();
  const backendPid = rows[0]?.pid;
  const results = [];
  for (const w of loads) {
    results.push(
      await timeLookups(
        w.name,
        w.points,
        async (lat, lon) => (await client.query<NearRow>({ name: 'nearest', text: NEAREST_SQL, values: [lat, lon, 25_000] })).rows.length > 0,
        backendPid,
      ),
    );
  }
  await client.end();
  return {
    approach: 'postgres earthdistance (1 connection)',
    loadMs,
    heapDeltaMb: (after.heap - before.heap) / 1e6,
    rssDeltaMb: (after.rss - before.rss) / 1e6,
    workloads: results,
    notes: ['load = connect (the table is imported once per database, see import line)', 'lookup = nearest town within 25 km only (no country check); server CPU from /proc of the backend'],
  };
}

/** What a migration or first start would do: the same towns as the offline geocoder, from the package data. */
async function importIntoPostgres(db: string): Promise<{ ms: number; rows: number; tableMb: number; indexMb: number }> {
  const { readPlaceTable } = await import('../src/places/geonames-dump-reader.js');
  const client = new pg.Client({ ...PG, database: db });
  client.on('error', () => {});
  await client.connect();
  try {
    const t0 = performance.now();
    await client.query('CREATE EXTENSION IF NOT EXISTS cube');
    await client.query('CREATE EXTENSION IF NOT EXISTS earthdistance');
    await client.query(`CREATE TABLE places (geoname_id integer PRIMARY KEY, name text NOT NULL, admin1 text, country_code char(2) NOT NULL, lat float8 NOT NULL, lon float8 NOT NULL)`);
    const t = await readPlaceTable();
    const batch = 20_000;
    for (let i = 0; i < t.count; i += batch) {
      const end = Math.min(t.count, i + batch);
      await client.query(
        `INSERT INTO places SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[])`,
        [Array.from(t.geonameIds.subarray(i, end)), t.names.slice(i, end), t.admin1Names.slice(i, end), t.countryCodes.slice(i, end), Array.from(t.lats.subarray(i, end)), Array.from(t.lons.subarray(i, end))],
      );
    }
    await client.query('CREATE INDEX places_earth ON places USING gist (ll_to_earth(lat, lon))');
    await client.query('ANALYZE places');
    const ms = performance.now() - t0;
    const { rows } = await client.query<{ table_bytes: string; index_bytes: string }>(
      `SELECT pg_table_size('places')::text AS table_bytes, pg_indexes_size('places')::text AS index_bytes`,
    );
    return { ms, rows: t.count, tableMb: Number(rows[0]?.table_bytes) / 1e6, indexMb: Number(rows[0]?.index_bytes) / 1e6 };
  } finally {
    await client.end();
  }
}

function runChild(approach: string, n: number, db?: string): Promise<ChildReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', SELF, '--child', approach, '--n', String(n), ...(db ? ['--db', db] : [])], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${approach} child exited ${code}`));
      try {
        resolve(JSON.parse(out) as ChildReport);
      } catch (err) {
        reject(new Error(`${approach} child printed no report: ${out.slice(0, 200)}`, { cause: err }));
      }
    });
  });
}

function print(r: ChildReport): void {
  console.log(`\n${r.approach}`);
  console.log(`  load in a fresh process   ${r.loadMs.toFixed(0)} ms`);
  console.log(`  heap delta                ${r.heapDeltaMb.toFixed(1)} MB (V8 heap + array buffers, after GC)`);
  console.log(`  RSS delta                 ${r.rssDeltaMb.toFixed(1)} MB`);
  for (const w of r.workloads) {
    const db = w.dbCpuMsPerLookup === undefined ? '' : `, + Postgres backend ${w.dbCpuMsPerLookup.toFixed(3)} ms`;
    console.log(`  ${w.name.padEnd(7)} ${String(w.perSecond).padStart(8)} lookups/s, CPU ${w.cpuMsPerLookup.toFixed(3)} ms/lookup in this process${db} (${w.found}/${w.n} with a town)`);
  }
  for (const note of r.notes) console.log(`  note: ${note}`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.child === 'kdbush') return void process.stdout.write(JSON.stringify(await childKdbush(args.n)));
  if (args.child === 'postgres' && args.db) return void process.stdout.write(JSON.stringify(await childPostgres(args.n, args.db)));

  console.log(`reverse geocoding bench: ${args.n} lookups per workload, node ${process.version}`);
  if (!args.skip.has('kdbush')) print(await runChild('kdbush', args.n));
  if (!args.skip.has('postgres')) {
    const db = `photopipe_geobench_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ ...PG, database: 'postgres' });
    admin.on('error', () => {});
    await admin.connect();
    await admin.query(`CREATE DATABASE ${db}`);
    try {
      const imp = await importIntoPostgres(db);
      console.log(`\npostgres import (once per database): ${imp.rows} towns in ${(imp.ms / 1000).toFixed(1)} s; table ${imp.tableMb.toFixed(1)} MB, indexes ${imp.indexMb.toFixed(1)} MB (shared by all processes)`);
      print(await runChild('postgres', args.n, db));
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await admin.end();
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
