import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../shared/logger.js';

export interface ChildSpec {
  /** Role name, used in logs: api, worker:frame, reconciler, local-s3. */
  role: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

export interface SupervisorOptions {
  log: Logger;
  graceMs: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A role that exits more than crashLimit times within crashWindowMs is given up on. */
  crashLimit?: number;
  crashWindowMs?: number;
  /** A child that stayed up this long is healthy again: its backoff starts over. */
  stableAfterMs?: number;
}

interface Slot {
  spec: ChildSpec;
  child: ChildProcess | null;
  restarts: number;
  exits: number[];
  backoffMs: number;
  startedAt: number;
  stderrTail: string[];
  timer: NodeJS.Timeout | null;
  gaveUp: boolean;
}

const TAIL_LINES = 20;

/**
 * Runs each process of `npm start` / `photopipe workers` and keeps it running: an unexpected
 * exit (crash, kill -9, out of memory) is restarted with exponential backoff; a role that keeps
 * crashing within a short window is given up on, loudly, with the last lines of its stderr,
 * while the other roles keep working. stop() sends SIGTERM to all and waits up to the grace period.
 */
export class Supervisor {
  private readonly slots: Slot[] = [];
  private stopping = false;
  private readonly o: Required<SupervisorOptions>;

  constructor(opts: SupervisorOptions) {
    this.o = { initialBackoffMs: 1_000, maxBackoffMs: 30_000, crashLimit: 5, crashWindowMs: 60_000, stableAfterMs: 30_000, ...opts };
  }

  start(spec: ChildSpec): void {
    const slot: Slot = { spec, child: null, restarts: 0, exits: [], backoffMs: this.o.initialBackoffMs, startedAt: 0, stderrTail: [], timer: null, gaveUp: false };
    this.slots.push(slot);
    this.spawn(slot);
  }

  status(): { role: string; pid: number | null; restarts: number; gaveUp: boolean }[] {
    return this.slots.map((s) => ({ role: s.spec.role, pid: s.child?.pid ?? null, restarts: s.restarts, gaveUp: s.gaveUp }));
  }

  pidOf(role: string): number | null {
    return this.slots.find((s) => s.spec.role === role)?.child?.pid ?? null;
  }

  private spawn(slot: Slot): void {
    slot.timer = null;
    if (this.stopping) return;
    // Each child gets its own process group: Ctrl-C in a terminal reaches only the supervisor,
    // which then stops every child exactly once (a second signal would mean "exit now").
    const child = spawn(slot.spec.command, slot.spec.args, {
      env: { ...(slot.spec.env ?? process.env), PHOTOPIPE_SUPERVISED: '1' },
      stdio: ['ignore', 'inherit', 'pipe'],
      detached: true,
    });
    slot.child = child;
    slot.startedAt = Date.now();
    child.stderr?.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      const lines = chunk.toString('utf8').split('\n').filter((l) => l.length > 0);
      slot.stderrTail.push(...lines);
      if (slot.stderrTail.length > TAIL_LINES) slot.stderrTail.splice(0, slot.stderrTail.length - TAIL_LINES);
    });
    child.on('error', (err) => this.o.log.error({ role: slot.spec.role, err: err.message }, 'could not start process'));
    child.on('exit', (code, signal) => this.onExit(slot, child, code, signal));
    this.o.log.info({ role: slot.spec.role, pid: child.pid, restarts: slot.restarts }, 'process started');
  }

  private onExit(slot: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (slot.child !== child) return;
    slot.child = null;
    if (this.stopping) {
      this.o.log.info({ role: slot.spec.role, code, signal }, 'process stopped');
      return;
    }
    const now = Date.now();
    const upMs = now - slot.startedAt;
    if (upMs >= this.o.stableAfterMs) slot.backoffMs = this.o.initialBackoffMs;
    slot.exits = [...slot.exits.filter((t) => now - t < this.o.crashWindowMs), now];
    if (slot.exits.length > this.o.crashLimit) {
      slot.gaveUp = true;
      this.o.log.fatal(
        { role: slot.spec.role, code, signal, exits: slot.exits.length, windowMs: this.o.crashWindowMs, lastStderr: slot.stderrTail },
        `GIVING UP on ${slot.spec.role}: it exited ${slot.exits.length} times within ${this.o.crashWindowMs} ms; the other roles keep running. Last stderr lines:\n${slot.stderrTail.join('\n')}`,
      );
      return;
    }
    const delay = slot.backoffMs;
    slot.backoffMs = Math.min(slot.backoffMs * 2, this.o.maxBackoffMs);
    slot.restarts += 1;
    this.o.log.warn({ role: slot.spec.role, code, signal, upMs, restarts: slot.restarts, restartInMs: delay }, 'process exited unexpectedly; restarting');
    slot.timer = setTimeout(() => this.spawn(slot), delay);
  }

  /** Last resort if the supervisor itself exits abruptly: no orphaned children. */
  killAll(): void {
    for (const slot of this.slots) slot.child?.kill('SIGKILL');
  }

  /** SIGTERM to every child; SIGKILL to those still running after the grace period. */
  async stop(): Promise<void> {
    this.stopping = true;
    const running: Promise<void>[] = [];
    for (const slot of this.slots) {
      if (slot.timer) clearTimeout(slot.timer);
      const child = slot.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) continue;
      running.push(
        new Promise<void>((resolve) => {
          const kill = setTimeout(() => {
            this.o.log.warn({ role: slot.spec.role }, 'grace period over: killing');
            child.kill('SIGKILL');
          }, this.o.graceMs + 2_000);
          child.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          child.kill('SIGTERM');
        }),
      );
    }
    await Promise.all(running);
  }
}
