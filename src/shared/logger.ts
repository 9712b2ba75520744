import { createRequire } from 'node:module';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from './config.js';

export type { Logger };

const require = createRequire(import.meta.url);

/** pino-pretty's line formatter, when the package is there (a devDependency: never in the image). */
export function prettyFormatter(): ((line: string) => string) | null {
  try {
    const { prettyFactory } = require('pino-pretty') as { prettyFactory: (o: Record<string, unknown>) => (line: string) => string };
    return prettyFactory({ colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' });
  } catch {
    return null;
  }
}

/** Keys whose values never reach a log line, wherever they appear. */
const REDACT = ['req.headers.authorization', 'headers.authorization', 'authorization', '*.authorization', 'apiKey', 'key', 'secret', '*.secret'];

/**
 * One JSON logger per process; children are scoped to a role, a stage or a message (every line
 * about a photo carries photoId, tenantId, stage, attempt and the correlation id cid). Pretty
 * output only when a person watches: this process's stream is a terminal (a supervised child's
 * lines are made pretty by its supervisor instead). CLI commands whose stdout is their answer
 * (`keys create`) log to stderr.
 */
export function createLogger(config: Pick<Config, 'LOG_LEVEL'>, bindings: Record<string, unknown>, to: 'stdout' | 'stderr' = 'stdout'): Logger {
  const fd = to === 'stdout' ? 1 : 2;
  const tty = (to === 'stdout' ? process.stdout : process.stderr).isTTY === true;
  const pretty = tty ? prettyFormatter() : null;
  const destination: DestinationStream = pretty
    ? { write: (line: string) => void (to === 'stdout' ? process.stdout : process.stderr).write(pretty(line)) }
    : pino.destination({ fd, sync: to === 'stderr' });
  return pino(
    {
      level: config.LOG_LEVEL,
      base: { pid: process.pid, ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT, censor: '[redacted]' },
    },
    destination,
  );
}
