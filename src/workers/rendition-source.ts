import type { BlobStore } from '../shared/blob-store.js';
import type { StageView } from '../db/photos/stage-state-repo.js';

/** The bytes a rendition is made from: the decoded working copy when ingest made one (HEIC), else the upload. */
export function renditionSource(blobs: BlobStore, photoId: string, photo: StageView): Promise<Buffer> {
  return blobs.get(photoId, photo.file?.workingCopy ? 'work' : 'raw');
}
