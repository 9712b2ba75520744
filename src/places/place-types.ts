/**
 * What the geocode stage gets back for a photo's coordinates. One shape for every provider, so
 * the stage stores the same fields whether the answer came from the bundled data or the web
 * service.
 */
export interface PlaceMatch {
  geonameId: number;
  name: string;
  /** First-level division (state, region, Land) by name; null when the data has none for the place. */
  admin1: string | null;
  countryCode: string;
  /** English name of countryCode (Intl.DisplayNames), e.g. "Italy". */
  countryName: string;
  /** The place's centre, not the photo's position. */
  lat: number;
  lon: number;
  /** Great-circle distance from the photo to the place's centre. */
  distanceKm: number;
  source: 'offline' | 'geonames';
}

/**
 * No place is an answer, not an error: reason says why (no GPS, nothing within the distance,
 * ocean). The country is only given when it could be determined on its own (see README).
 */
export type GeocodeResult = { place: PlaceMatch } | { place: null; reason: string; countryCode?: string; countryName?: string };

export interface ReverseGeocoder {
  lookup(lat: number, lon: number, signal?: AbortSignal): Promise<GeocodeResult>;
  close?(): Promise<void>;
}
