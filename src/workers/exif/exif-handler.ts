import { extractExif } from '../../imaging/exif.js';
import { defineStage } from '../stage-module.js';
import { exifColumns } from './exif-columns.js';

/** exif: everything exifr reads, stored as JSON, plus normalised fields; whether there is GPS decides geocode. */
export default defineStage({
  create: (deps) => ({
    async run({ msg }) {
      const { exif, raw } = await extractExif(await deps.blobs.get(msg.photoId, 'raw'));
      return { columns: exifColumns(exif, raw), facts: { gps: exif.gps } };
    },
  }),
});
