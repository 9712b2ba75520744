import type { Config } from '../shared/config.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { ProcessResources } from '../shared/process-resources.js';
import { photoRepos, type PhotoRepos } from '../db/photos/index.js';
import { ApiKeyRepo } from '../db/api-key-repo.js';

export interface ToolContext {
  config: Config;
  log: Logger;
  res: ProcessResources;
  photos: PhotoRepos;
  keys: ApiKeyRepo;
}

/**
 * The composition root of a one-shot operator command: the process's clients (the broker only if
 * the command uses it), released when the command ends. Logs go to stderr: stdout is the answer.
 */
export async function withTools<T>(config: Config, fn: (t: ToolContext) => Promise<T>): Promise<T> {
  const log = createLogger(config, { role: 'cli' }, 'stderr');
  const res = new ProcessResources(config, log, 'photopipe-cli');
  try {
    return await fn({ config, log, res, photos: photoRepos(res.db), keys: new ApiKeyRepo(res.db) });
  } finally {
    await res.release();
  }
}

/** Prints a command's answer on stdout: text as is, anything else as indented JSON. */
export function out(value: unknown): void {
  process.stdout.write(typeof value === 'string' ? `${value}\n` : `${JSON.stringify(value, null, 2)}\n`);
}
