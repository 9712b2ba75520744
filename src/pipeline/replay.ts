import type { Config } from '../shared/config.js';
import type { ProcessResources } from '../shared/process-resources.js';
import { DlqService, dlqBrowseLock, type ReopenPhoto } from '../queues/dlq-service.js';
import type { StageStateRepo } from '../db/photos/stage-state-repo.js';

/** Before a dead letter is replayed, its photo is reopened; a photo whose bytes are gone cannot be. */
export function reopenForReplay(stages: StageStateRepo, config: Pick<Config, 'FAILED_RETENTION_SECONDS'>): ReopenPhoto {
  return async (msg, stage) => {
    const outcome = await stages.reopenStage(msg, stage);
    if (outcome === 'expired') return `the photo's bytes were removed ${config.FAILED_RETENTION_SECONDS} s after it failed (FAILED_RETENTION_SECONDS): upload it again`;
    return null;
  };
}

/** The DLQ tools as the API and the CLI use them: replay reopens photos; browses take turns fleet-wide. */
export function dlqServiceFor(res: ProcessResources, stages: StageStateRepo): DlqService {
  return new DlqService(res.broker, reopenForReplay(stages, res.config), dlqBrowseLock(res.config, res.redis));
}
