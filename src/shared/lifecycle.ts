import type { Logger } from './logger.js';

/**
 * Resources released in reverse order of acquisition. Every step runs even if an earlier one
 * throws, and release() returns the same promise when called twice.
 */
export class Releasers {
  private readonly steps: { name: string; fn: () => Promise<unknown> }[] = [];
  private releasing: Promise<void> | null = null;

  constructor(private readonly log: Logger) {}

  add(name: string, fn: () => Promise<unknown>): void {
    this.steps.push({ name, fn });
  }

  release(): Promise<void> {
    this.releasing ??= (async () => {
      for (const step of [...this.steps].reverse()) {
        try {
          await step.fn();
        } catch (err) {
          this.log.warn({ err: (err as Error).message, step: step.name }, 'release step failed');
        }
      }
    })();
    return this.releasing;
  }
}

/**
 * First SIGTERM/SIGINT: graceful shutdown, exit 0. Second signal: exit 1 at once.
 * Programmer errors (uncaught exceptions) are logged and crash the process (exit 1); the
 * supervisor or the orchestrator restarts it. Returns the graceful shutdown itself, for a process
 * that decides to stop on its own (with a non-zero code, so that it is replaced).
 */
export function installShutdown(log: Logger, releasers: Releasers, onStop?: () => void): (reason: string, exitCode?: number) => void {
  let stopping = false;
  const stop = (signal: string, exitCode = 0) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    onStop?.();
    const started = Date.now();
    void releasers.release().then(() => {
      log.info({ durationMs: Date.now() - started, exitCode }, 'stopped');
      process.exit(exitCode);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (process.env.PHOTOPIPE_SUPERVISED === '1') {
    // Started by the supervisor in a process group of its own: if the supervisor dies
    // (kill -9), this process is re-parented; shut down instead of running on unsupervised.
    const parent = process.ppid;
    const timer = setInterval(() => {
      if (process.ppid !== parent) stop('parent-exit');
    }, 1_000);
    timer.unref();
  }
  process.on('uncaughtException', (err) => {
    log.fatal({ err: err.message, stack: err.stack }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.fatal({ err: err instanceof Error ? err.message : String(err), stack: err instanceof Error ? err.stack : undefined }, 'unhandled rejection');
    process.exit(1);
  });
  return stop;
}
