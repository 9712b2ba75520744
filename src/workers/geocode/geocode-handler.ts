import { jsonb } from '../../db/photos/stage-columns.js';
import { defineStage } from '../stage-module.js';

/**
 * geocode: placeholder until reverse geocoding lands (its own issue). The coordinates are
 * already stored by the exif stage; this stage marks the photo as geocoded with no place, so
 * the queue, its retries and its DLQ exist and a real resolver only replaces this handler.
 */
export default defineStage({
  create: () => ({
    run: () => Promise.resolve({ columns: { place: jsonb(null) } }),
  }),
});
