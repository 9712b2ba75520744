import type { Db } from '../../shared/db.js';
import { PIPELINE } from '../../pipeline/photo-pipeline.js';
import { PhotoIntakeRepo } from './photo-intake-repo.js';
import { PhotoReadRepo } from './photo-read-repo.js';
import { ContentClaimRepo } from './content-claim-repo.js';
import { StageStateRepo } from './stage-state-repo.js';
import { VariantRepo } from './variant-repo.js';
import { StalePhotoRepo } from './stale-photo-repo.js';
import { BlobRetentionRepo } from './blob-retention-repo.js';
import { FailureRepo } from './failure-repo.js';

/** Photo state in Postgres, one repository per concern, built once per process. */
export interface PhotoRepos {
  intake: PhotoIntakeRepo;
  reads: PhotoReadRepo;
  claims: ContentClaimRepo;
  stages: StageStateRepo;
  variants: VariantRepo;
  stale: StalePhotoRepo;
  retention: BlobRetentionRepo;
  failures: FailureRepo;
}

/** `intakeBatchWindowMs`: group concurrent inserts of new photos (the API; see PhotoIntakeRepo). */
export function photoRepos(db: Db, opts: { intakeBatchWindowMs?: number } = {}): PhotoRepos {
  return {
    intake: new PhotoIntakeRepo(db, { batchWindowMs: opts.intakeBatchWindowMs }),
    reads: new PhotoReadRepo(db),
    claims: new ContentClaimRepo(db),
    stages: new StageStateRepo(db, PIPELINE),
    variants: new VariantRepo(db),
    stale: new StalePhotoRepo(db),
    retention: new BlobRetentionRepo(db),
    failures: new FailureRepo(db),
  };
}
