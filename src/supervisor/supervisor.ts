import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
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
  /** Called once no role is left running because every one of them was given up on. */
  onAllGaveUp?: () => void;
  /** Where the children's output goes (default: this process's stdout and stderr). */
  stdout?: Writable;
  /** Formats each JSON line of the children's stdout (pretty output on a terminal). */
  format?: (line: string) => string;
  stderr?: Writable;
}

interface Slot {
  spec: ChildSpec;
  child: ChildProcess | null;
  restarts: number;
  exits: number[];
  backoffMs: number;
  startedAt: number;
  stderrTail: string[];
  stdoutTail: string[];
  timer: NodeJS.Timeout | null;
  gaveUp: boolean;
}

const TAIL_LINES = 20;
/** A child that writes without newlines is forwarded in pieces of this size rather than buffered without bound. */
const MAX_PARTIAL_LINE = 64 * 1024;

/** A JSON log line made pretty; anything else (a crash's plain text) as it is. */
function formatLine(line: string, format: (line: string) => string): string {
  if (!line.startsWith('{')) return `${line}\n`;
  try {
    return format(line);
  } catch {
    return `${line}\n`;
  }
}

/**
 * Forwards a child's stream line by line (so lines of different children never interleave
 * mid-line in the shared output) and keeps its last lines for the give-up report.
 */
function forwardLines(from: Readable, to: Writable, tail: string[], format?: (line: string) => string): void {
  let partial = '';
  const keep = (lines: string[]) => {
    tail.push(...lines.filter((l) => l.length > 0));
    if (tail.length > TAIL_LINES) tail.splice(0, tail.length - TAIL_LINES);
  };
  from.setEncoding('utf8');
  from.on('data', (chunk: string) => {
    const text = partial + chunk;
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      if (text.length <= MAX_PARTIAL_LINE) {
        partial = text;
        return;
      }
      to.write(`${text}\n`);
      keep([text.slice(0, 2_000)]);
      partial = '';
      return;
    }
    partial = text.slice(end + 1);
    const complete = text.slice(0, end + 1);
    to.write(format ? complete.split('\n').filter((l) => l.length > 0).map((l) => formatLine(l, format)).join('') : complete);
    keep(complete.split('\n'));
  });
  from.on('end', () => {
    if (partial.length === 0) return;
    to.write(`${partial}\n`);
    keep([partial]);
    partial = '';
  });
}

/**
 * Runs each process of `npm start` / `photopipe workers` and keeps it running: an unexpected
 * exit (crash, kill -9, out of memory) is restarted with exponential backoff; a role that keeps
 * crashing within a short window is given up on, loudly, with the last lines of its stderr (and
 * stdout, where our JSON logs and their fatal lines go), while the other roles keep working.
 * stop() sends SIGTERM to all and waits up to the grace period.
 *
 * Log lines about a child name it with childRole/childPid: the supervisor's own logger already
 * binds role and pid, and a JSON line with the same key twice is read differently by each tool.
 */
export class Supervisor {
  private readonly slots: Slot[] = [];
  private stopping = false;
  private readonly o: Required<Omit<SupervisorOptions, 'onAllGaveUp' | 'stdout' | 'stderr' | 'format'>> & Pick<SupervisorOptions, 'onAllGaveUp'>;
  private readonly stdout: Writable;
  private readonly format: ((line: string) => string) | undefined;
  private readonly stderr: Writable;

  constructor(opts: SupervisorOptions) {
    this.o = { initialBackoffMs: 1_000, maxBackoffMs: 30_000, crashLimit: 5, crashWindowMs: 60_000, stableAfterMs: 30_000, ...opts };
    this.stdout = opts.stdout ?? process.stdout;
    this.format = opts.format;
    this.stderr = opts.stderr ?? process.stderr;
  }

  start(spec: ChildSpec): void {
    const slot: Slot = {
      spec,
      child: null,
      restarts: 0,
      exits: [],
      backoffMs: this.o.initialBackoffMs,
      startedAt: 0,
      stderrTail: [],
      stdoutTail: [],
      timer: null,
      gaveUp: false,
    };
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
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    slot.child = child;
    slot.startedAt = Date.now();
    // A fresh tail per run: the give-up report shows why the last run died.
    slot.stdoutTail = [];
    slot.stderrTail = [];
    if (child.stdout) forwardLines(child.stdout, this.stdout, slot.stdoutTail, this.format);
    if (child.stderr) forwardLines(child.stderr, this.stderr, slot.stderrTail);
    child.on('error', (err) => this.o.log.error({ childRole: slot.spec.role, err: err.message }, 'could not start process'));
    // 'close' (not 'exit'): it fires once the child's output is fully read, so the tails are complete.
    child.on('close', (code, signal) => this.onExit(slot, child, code, signal));
    this.o.log.info({ childRole: slot.spec.role, childPid: child.pid, restarts: slot.restarts }, 'process started');
  }

  private onExit(slot: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (slot.child !== child) return;
    slot.child = null;
    if (this.stopping) {
      this.o.log.info({ childRole: slot.spec.role, childPid: child.pid, code, signal }, 'process stopped');
      return;
    }
    const now = Date.now();
    const upMs = now - slot.startedAt;
    if (upMs >= this.o.stableAfterMs) slot.backoffMs = this.o.initialBackoffMs;
    slot.exits = [...slot.exits.filter((t) => now - t < this.o.crashWindowMs), now];
    if (slot.exits.length > this.o.crashLimit) {
      this.giveUp(slot, child, code, signal);
      return;
    }
    const delay = slot.backoffMs;
    slot.backoffMs = Math.min(slot.backoffMs * 2, this.o.maxBackoffMs);
    slot.restarts += 1;
    this.o.log.warn(
      { childRole: slot.spec.role, childPid: child.pid, code, signal, upMs, restarts: slot.restarts, restartInMs: delay },
      'process exited unexpectedly; restarting',
    );
    slot.timer = setTimeout(() => this.spawn(slot), delay);
  }

  private giveUp(slot: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    slot.gaveUp = true;
    const role = slot.spec.role;
    const how = signal ? `signal ${signal}` : `code ${code}`;
    const stderrText = slot.stderrTail.length > 0 ? slot.stderrTail.join('\n') : '(nothing on stderr)';
    const stdoutText = slot.stdoutTail.length > 0 ? slot.stdoutTail.join('\n') : '(nothing on stdout)';
    const summary = `GIVING UP on ${role}: it exited ${slot.exits.length} times within ${this.o.crashWindowMs} ms (last: ${how}) and will not be restarted; the other roles keep running.`;
    this.o.log.fatal(
      { childRole: role, childPid: child.pid, code, signal, exits: slot.exits.length, restarts: slot.restarts, windowMs: this.o.crashWindowMs, lastStderr: slot.stderrTail, lastStdout: slot.stdoutTail },
      `${summary}\nLast stderr lines:\n${stderrText}\nLast stdout lines:\n${stdoutText}`,
    );
    // The JSON line escapes its newlines; a person at a terminal gets the same report readable.
    const bar = '='.repeat(78);
    this.stderr.write(`${bar}\n${summary}\n--- last stderr lines of ${role} ---\n${stderrText}\n--- last stdout lines of ${role} ---\n${stdoutText}\n${bar}\n`);
    if (this.slots.every((s) => s.gaveUp)) this.o.onAllGaveUp?.();
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
            this.o.log.warn({ childRole: slot.spec.role, childPid: child.pid }, 'grace period over: killing');
            child.kill('SIGKILL');
          }, this.o.graceMs + 2_000);
          // 'close': the child has exited and its last log lines have been forwarded.
          child.once('close', () => {
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
