import type { StageName } from '../shared/config.js';
import type { StageHandler } from '../queues/stage-consumer.js';
import type { WorkerDeps } from './worker-deps.js';
import { ingestHandler } from './ingest/ingest-handler.js';
import { exifHandler } from './exif/exif-handler.js';
import { geocodeHandler } from './geocode/geocode-handler.js';
import { frameHandler } from './frame/frame-handler.js';
import { thumbnailHandler } from './thumbnail/thumbnail-handler.js';
import { uploadHandler } from './upload/upload-handler.js';

/** A stage is a queue plus a handler: adding one means a handler here and a name in STAGES. */
export const STAGE_HANDLERS: Record<StageName, (deps: WorkerDeps) => StageHandler> = {
  ingest: ingestHandler,
  exif: exifHandler,
  geocode: geocodeHandler,
  frame: frameHandler,
  thumbnail: thumbnailHandler,
  upload: uploadHandler,
};

export const STAGE_DESCRIPTIONS: Record<StageName, string> = {
  ingest: 'SHA-256, dedupe, file info; decodes HEIC once',
  exif: 'EXIF via exifr, normalised fields, routes GPS photos to geocode',
  geocode: 'records coordinates (place resolution lands in its own issue)',
  frame: 'polaroid rendition 612x600',
  thumbnail: 'thumbnail, longest side 320 px',
  upload: 'original + renditions to S3, variant rows',
};
