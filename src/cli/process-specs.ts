import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { ChildSpec } from '../supervisor/supervisor.js';

/** bin/photopipe.js: runs the TypeScript source in a checkout and the compiled code in the image. */
export const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'photopipe.js');

/** A child running `photopipe <args>`; `entry` is the CLI script it runs (see child-entry.ts). */
export function cliChild(role: string, args: string[], env: NodeJS.ProcessEnv, entry = BIN): ChildSpec {
  return { role, command: process.execPath, args: [entry, ...args], env };
}

export function workerChild(stage: string, env: NodeJS.ProcessEnv, concurrency?: number, entry = BIN): ChildSpec {
  return cliChild(`worker:${stage}`, ['worker', '--role', stage, ...(concurrency ? ['--concurrency', String(concurrency)] : [])], env, entry);
}
