import type { StageMessage } from '../queues/messages.js';
import type { WorkerDeps } from './worker-deps.js';

/** The bytes a rendition is made from: the decoded working copy when ingest made one (HEIC), else the upload. */
export async function renditionSource(deps: WorkerDeps, msg: StageMessage): Promise<Buffer> {
  return (await deps.blobs.getOptional(msg.photoId, 'work')) ?? deps.blobs.getByKey(msg.rawKey, msg.photoId);
}
