import type { Redis } from 'ioredis';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { Db } from '../shared/db.js';
import type { BlobStore } from '../shared/blob-store.js';
import type { Storage } from '../shared/storage.js';
import type { Broker } from '../queues/broker.js';
import type { PhotoRepo } from '../db/photo-repo.js';
import type { ApiKeyRepo } from '../db/api-key-repo.js';
import type { FrameRepo } from '../db/frame-repo.js';
import type { LoadShedder } from './load-shedder.js';
import type { DlqService } from '../queues/dlq-service.js';

export interface ApiDeps {
  config: Config;
  log: Logger;
  db: Db;
  redis: Redis;
  blobs: BlobStore;
  storage: Storage;
  broker: Broker;
  photos: PhotoRepo;
  apiKeys: ApiKeyRepo;
  frames: FrameRepo;
  shedder: LoadShedder;
  dlq: DlqService;
}
