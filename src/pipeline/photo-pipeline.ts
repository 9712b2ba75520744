import { defineGraph, type PhotoFacts } from './graph.js';

const UPLOAD = { label: 'an upload', test: (f: PhotoFacts) => f.profile === 'photo' };
const BATCH = { label: 'a batch download', test: (f: PhotoFacts) => f.profile === 'batch' };

/**
 * The photo pipeline, declared once:
 *
 *   ingest ─┬─ exif ── geocode (uploads; geocode when the photo has GPS; best effort)
 *           ├─ frame ─────┐
 *           ├─ thumbnail ─┴─ upload (uploads)
 *           └─ convert ── store (batch downloads: the batch's output format, size and quality, public)
 *
 * Every photo runs ingest (hash, dedupe, file info, HEIC decode); what follows depends on what it
 * is for, a fact fixed when it is accepted (`profile`): the stages of the other kind are skipped.
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
    when: UPLOAD,
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
    when: UPLOAD,
    // The decoded working copy when ingest made one (HEIC), else the upload.
    reads: ['raw', 'work'],
    writes: ['framed'],
    defaults: { prefetch: 2, timeoutMs: 60_000 },
    description: 'polaroid rendition 612x600',
  },
  thumbnail: {
    after: ['ingest'],
    when: UPLOAD,
    reads: ['raw', 'work'],
    writes: ['thumbnail'],
    defaults: { prefetch: 2, timeoutMs: 60_000 },
    description: 'thumbnail, longest side 320 px',
  },
  upload: {
    after: ['frame', 'thumbnail'],
    when: UPLOAD,
    reads: ['raw', 'framed', 'thumbnail'],
    writes: [],
    defaults: { prefetch: 8, timeoutMs: 60_000 },
    description: 'original + renditions to S3, variant rows',
  },
  convert: {
    after: ['ingest'],
    when: BATCH,
    reads: ['raw', 'work'],
    writes: ['converted'],
    // CPU-bound: scale by processes (about one per core), each with a small prefetch.
    defaults: { prefetch: 2, timeoutMs: 60_000 },
    description: "the batch's output: upright, within its max size, in its format and quality, no metadata",
  },
  store: {
    after: ['convert'],
    when: BATCH,
    reads: ['converted'],
    writes: [],
    defaults: { prefetch: 8, timeoutMs: 60_000 },
    description: 'the converted image to S3 under a public URL, variant row',
  },
});

export type StageName = keyof typeof PIPELINE.spec;
export const STAGES = PIPELINE.stages as readonly [StageName, ...StageName[]];
