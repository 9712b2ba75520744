import { defineGraph } from './graph.js';

/**
 * The photo pipeline, declared once:
 *
 *   ingest ─┬─ exif ── geocode (when the photo has GPS; best effort)
 *           ├─ frame ─────┐
 *           └─ thumbnail ─┴─ upload
 *
 * Adding a stage: an entry here and its handler in src/workers/<stage>/<stage>-handler.ts. Queues,
 * config validation, the worker roles, the reconciler, completion, blob clean-up and the status
 * API follow from this declaration.
 */
export const PIPELINE = defineGraph({
  ingest: {
    after: [],
    reads: ['raw'],
    writes: ['work'],
    defaults: { prefetch: 4, timeoutMs: 60_000 },
    description: 'SHA-256, dedupe, file info; decodes HEIC once',
  },
  exif: {
    after: ['ingest'],
    reads: ['raw'],
    writes: [],
    defaults: { prefetch: 8, timeoutMs: 20_000 },
    description: 'EXIF via exifr, normalised fields; GPS decides geocode',
  },
  geocode: {
    after: ['exif'],
    when: { label: 'has GPS', test: (f) => f.gps !== null },
    // A geocoder down past the retry policy leaves the photo complete without a place.
    bestEffort: true,
    reads: [],
    writes: [],
    defaults: { prefetch: 16, timeoutMs: 20_000 },
    description: 'reverse geocoding: the nearest town (offline data or GeoNames) as a Place',
  },
  frame: {
    after: ['ingest'],
    // The decoded working copy when ingest made one (HEIC), else the upload.
    reads: ['raw', 'work'],
    writes: ['framed'],
    defaults: { prefetch: 2, timeoutMs: 60_000 },
    description: 'polaroid rendition 612x600',
  },
  thumbnail: {
    after: ['ingest'],
    reads: ['raw', 'work'],
    writes: ['thumbnail'],
    defaults: { prefetch: 2, timeoutMs: 60_000 },
    description: 'thumbnail, longest side 320 px',
  },
  upload: {
    after: ['frame', 'thumbnail'],
    reads: ['raw', 'framed', 'thumbnail'],
    writes: [],
    defaults: { prefetch: 8, timeoutMs: 60_000 },
    description: 'original + renditions to S3, variant rows',
  },
});

export type StageName = keyof typeof PIPELINE.spec;
export const STAGES = PIPELINE.stages as readonly [StageName, ...StageName[]];
