import KDBush from 'kdbush';
import { around } from 'geokdbush';
import { readPlaceTable, type DumpSelection, type PlaceTable } from './geonames-dump-reader.js';
import { distanceKm } from './place-rules.js';

export interface NearbyPlace {
  row: number;
  distanceKm: number;
}

/**
 * A static k-d tree over the places' lon/lat. geokdbush walks it by great-circle distance, so the
 * nearest place is right across the antimeridian (Fiji, Chukotka) and near the poles, where a
 * planar nearest-neighbour on degrees is wrong.
 */
export class PlaceIndex {
  private constructor(
    readonly table: PlaceTable,
    private readonly tree: KDBush,
  ) {}

  static build(table: PlaceTable): PlaceIndex {
    const tree = new KDBush(table.count);
    for (let i = 0; i < table.count; i++) tree.add(table.lons[i] ?? 0, table.lats[i] ?? 0);
    tree.finish();
    return new PlaceIndex(table, tree);
  }

  /** The up to `limit` nearest places within maxKm, nearest first. */
  nearest(lat: number, lon: number, maxKm: number, limit = 1): NearbyPlace[] {
    return around(this.tree, lon, lat, limit, maxKm).map((row) => ({
      row,
      distanceKm: distanceKm(lat, lon, this.table.lats[row] ?? NaN, this.table.lons[row] ?? NaN),
    }));
  }
}

let shared: { key: string; index: Promise<PlaceIndex> } | null = null;

/**
 * Loads the bundled places once per process and shares the index between every geocoder made in
 * it: the table is read-only, and a second copy would only double the 40-odd MB it costs. A
 * different selection builds a new index (tests, the benchmark).
 */
export function loadPlaceIndex(selection: DumpSelection = {}): Promise<PlaceIndex> {
  const key = JSON.stringify(selection);
  if (shared?.key !== key) {
    const index = readPlaceTable(selection).then((table) => PlaceIndex.build(table));
    // A failed load must not stick: the next caller tries again instead of inheriting the error.
    index.catch(() => {
      if (shared?.index === index) shared = null;
    });
    shared = { key, index };
  }
  return shared.index;
}
