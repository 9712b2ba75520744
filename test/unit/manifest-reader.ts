import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface GpsFixture {
  file: string;
  lat: number;
  lon: number;
  nearestCity: string;
  country: string;
  geonameId: number;
  distanceKm: number;
}

/**
 * The shared photo corpus's manifest: found by walking up from this folder to a `shared/` beside
 * one of its parents, which holds in a clone next to shared/ (CI) and in a worktree alike.
 */
export function manifestPath(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const candidate = join(dir, 'shared', 'fixtures', 'photos', 'manifest.tsv');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) throw new Error('shared/fixtures/photos/manifest.tsv not found above test/unit');
  }
}

/** Every manifest row with GPS. */
export function gpsFixtures(): GpsFixture[] {
  const [head = '', ...lines] = readFileSync(manifestPath(), 'utf8').trim().split('\n');
  const header = head.split('\t');
  const col = (row: string[], name: string) => {
    const i = header.indexOf(name);
    if (i === -1) throw new Error(`manifest has no column ${name}`);
    return row[i] ?? '';
  };
  return lines
    .map((line) => line.split('\t'))
    .filter((row) => col(row, 'gps_lat') !== '')
    .map((row) => ({
      file: col(row, 'file'),
      lat: Number(col(row, 'gps_lat')),
      lon: Number(col(row, 'gps_lon')),
      nearestCity: col(row, 'nearest_city'),
      country: col(row, 'country'),
      geonameId: Number(col(row, 'geonameid')),
      distanceKm: Number(col(row, 'distance_km')),
    }));
}
