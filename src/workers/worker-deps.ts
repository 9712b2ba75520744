import type { Config } from '../shared/config.js';
import type { BlobStore } from '../shared/blob-store.js';
import type { Storage } from '../shared/storage.js';
import type { Broker } from '../queues/broker.js';
import type { PhotoRepo } from '../db/photo-repo.js';
import type { FrameRepo } from '../db/frame-repo.js';

/** What every stage handler may use; built once per process by the composition root. */
export interface WorkerDeps {
  config: Config;
  photos: PhotoRepo;
  frames: FrameRepo;
  blobs: BlobStore;
  storage: Storage;
  broker: Broker;
}
