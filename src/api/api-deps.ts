import type { ProcessClients } from '../shared/process-resources.js';
import type { PhotoRepos } from '../db/photos/index.js';
import type { ApiKeyRepo } from '../db/api-key-repo.js';
import type { FrameRepo } from '../db/frame-repo.js';
import type { PlaceRepo } from '../db/places/place-repo.js';
import type { LoadShedder } from './load-shedder.js';
import type { DlqService } from '../queues/dlq-service.js';
import type { TenantLoad } from '../pipeline/tenant-load.js';
import type { DashboardData } from '../observability/dashboard-data.js';
import type { ApiMetrics } from '../observability/api-metrics.js';
import type { QueueStats } from '../observability/queue-stats.js';
import type { WebhookRepo } from '../db/webhook-repo.js';
import type { WebhookDeliveryRepo } from '../db/webhook-delivery-repo.js';
import type { Redis } from 'ioredis';

/** What the API's routes are handed by its composition root (run-api.ts). */
export interface ApiDeps extends ProcessClients {
  photos: PhotoRepos;
  apiKeys: ApiKeyRepo;
  frames: FrameRepo;
  places: PlaceRepo;
  shedder: LoadShedder;
  tenantLoad: TenantLoad;
  dlq: DlqService;
  dashboard: DashboardData;
  metrics: ApiMetrics;
  queueStats: QueueStats;
  webhooks: WebhookRepo;
  deliveries: WebhookDeliveryRepo;
  /**
   * A second Redis connection for SUBSCRIBE (the resumable uploads' shared lock hears release
   * requests on it). Without it, resumable uploads are not offered.
   */
  subscriber?: Redis;
}
