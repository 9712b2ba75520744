import type { StageName } from '../pipeline/photo-pipeline.js';
import type { StageModule } from './stage-module.js';

/**
 * A stage's code lives at src/workers/<stage>/<stage>-handler.ts (default export: a StageModule),
 * so the pipeline's declaration plus that file is all a new stage needs. Loaded on demand: a worker
 * process loads only the stages it runs (and their dependencies: sharp, the geocoder's index).
 */
export async function loadStageModule(stage: StageName): Promise<StageModule> {
  const path = `./${stage}/${stage}-handler.js`;
  let mod: { default?: StageModule };
  try {
    mod = (await import(path)) as { default?: StageModule };
  } catch (err) {
    throw new Error(`stage "${stage}": cannot load its handler ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!mod.default || typeof mod.default.create !== 'function') throw new Error(`stage "${stage}": ${path} has no default export made with defineStage()`);
  return mod.default;
}
