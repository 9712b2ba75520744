import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOG_DIR, type Proc, type Stack } from './stack.js';

/**
 * Helpers the service tests share to look at the stack's child processes: their log files in
 * .local/test-logs and whether a pid is still running.
 */

/** The fields most log lines have; a test narrows this with its own interface through `logLines<T>`. */
export interface LogLine {
  level?: string | number;
  msg?: string;
  [key: string]: unknown;
}

/** The whole log file of one of the stack's child processes ('' if it has not written one). */
export function logText(stack: Stack, name: string): string {
  const file = join(LOG_DIR, `${stack.name}-${name}.log`);
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

/** The JSON log lines of one of the stack's child processes, skipping lines that do not parse (one may still be being written). */
export function logLines<T = LogLine>(stack: Stack, name: string): T[] {
  return logText(stack, name)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as T];
      } catch {
        return [];
      }
    });
}

/** A process is gone when signal 0 fails (or it is a zombie nobody reaped yet). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Waits for a process to exit on its own; rejects if it has not within `ms` (it is not signalled). */
export async function exitWithin(p: Proc, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return Promise.race([
    p.exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${p.name} did not exit within ${ms} ms`)), ms).unref()),
  ]);
}
