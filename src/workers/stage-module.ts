import type { ProcessClients } from '../shared/process-resources.js';
import type { StageMessage } from '../queues/messages.js';
import type { StageContext } from '../queues/stage-consumer.js';
import type { PhotoFacts } from '../pipeline/graph.js';
import type { PhotoRepos } from '../db/photos/index.js';
import type { StageView } from '../db/photos/stage-state-repo.js';
import type { StageColumns } from '../db/photos/stage-columns.js';
import type { FrameRepo } from '../db/frame-repo.js';

/** What a stage may use; built once per worker process by its composition root (run-workers.ts). */
export interface StageDeps extends ProcessClients {
  photos: PhotoRepos;
  frames: FrameRepo;
}

/** One message's work: the photo as the stage sees it, and the consumer's context (log, signal, deadline). */
export interface StageWork {
  msg: StageMessage;
  photo: StageView;
  ctx: StageContext;
}

/**
 * What a stage hands back to be committed with its completion: its own columns, and the facts
 * they establish for later stages' conditions. `final` means the photo reached a final state by
 * other means (a duplicate): nothing is committed and nothing follows.
 */
export type StageResult = void | { columns?: StageColumns; facts?: Partial<PhotoFacts>; final?: 'duplicate' };

export interface StageRuntime {
  /** Does the stage's work for a photo whose stage is pending; the runner commits the result. */
  run(work: StageWork): Promise<StageResult>;
  /** Releases what create() acquired (an index, a limiter), at shutdown. */
  stop?(): Promise<void>;
}

/**
 * A stage's module (src/workers/<stage>/<stage>-handler.ts, default export). create() may load
 * resources asynchronously at start-up (an index, a rate limiter); the worker consumes only
 * once every stage in the process has been created.
 */
export interface StageModule {
  create(deps: StageDeps): StageRuntime | Promise<StageRuntime>;
}

export function defineStage(m: StageModule): StageModule {
  return m;
}
