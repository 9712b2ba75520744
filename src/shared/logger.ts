import { pino, type Logger } from 'pino';
import type { Config } from './config.js';

export type { Logger };

/**
 * One JSON logger per process; children are scoped to a role, a stage or a message. CLI commands
 * whose stdout is their answer (`keys create`) log to stderr instead.
 */
export function createLogger(config: Pick<Config, 'LOG_LEVEL'>, bindings: Record<string, unknown>, to: 'stdout' | 'stderr' = 'stdout'): Logger {
  return pino(
    {
      level: config.LOG_LEVEL,
      base: { pid: process.pid, ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: to === 'stdout' ? 1 : 2, sync: to === 'stderr' }),
  );
}
