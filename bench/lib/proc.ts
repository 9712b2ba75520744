import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

/**
 * Process measurements from /proc (Linux): resident memory, its high-water mark, CPU time.
 * The system's processes are children started through bin/photopipe.js, which runs the real
 * code in-process, so a child's pid is the process whose memory and CPU are measured.
 */

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86-64/arm64

function statusField(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Current resident set size in bytes, or null when the process is gone. */
export function rssBytes(pid: number): number | null {
  return statusField(pid, 'VmRSS');
}

/** Peak resident set size since start or since the last resetPeakRss(). */
export function hwmBytes(pid: number): number | null {
  return statusField(pid, 'VmHWM');
}

/** Resets VmHWM to the current RSS (Linux: "5" into clear_refs), so a peak can be read per run. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** The fields of /proc/<pid>/stat the bench reads, or null when the process is gone. */
export interface ProcStat {
  pid: number;
  comm: string;
  ppid: number;
  /** Start time in clock ticks since boot: with the pid, it tells a process from a later one that reuses the pid. */
  startTicks: number;
  /** User + system CPU time in milliseconds. */
  cpuMs: number;
}

export function procStat(pid: number): ProcStat | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name sits in parentheses and may hold spaces; the fields after its ")" are
    // state, ppid, … (field 4 = ppid, 14/15 = utime/stime, 22 = starttime).
    const close = stat.lastIndexOf(')');
    const rest = stat.slice(close + 2).split(' ');
    return {
      pid,
      comm: stat.slice(stat.indexOf('(') + 1, close),
      ppid: Number(rest[1]),
      startTicks: Number(rest[19]),
      cpuMs: ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK,
    };
  } catch {
    return null;
  }
}

/** User + system CPU time of a process in milliseconds, or null when it is gone. */
export function cpuMs(pid: number): number | null {
  return procStat(pid)?.cpuMs ?? null;
}

/** Pids whose command name (/proc/<pid>/comm) is one of names. */
export function pidsByComm(names: readonly string[]): { pid: number; comm: string }[] {
  const out: { pid: number; comm: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (names.includes(comm)) out.push({ pid: Number(entry), comm });
    } catch {
      // the process exited while we looked
    }
  }
  return out;
}

export interface Target {
  name: string;
  pid: number;
}

export interface SampleResult {
  durationMs: number;
  samples: number;
  /** Peak RSS per target name (max over processes sharing a name), bytes: max(sampled, VmHWM after reset). */
  peakRss: Record<string, number>;
  /** Peak Redis used_memory during the window, and the value when it started. */
  redis: { baselineBytes: number; peakBytes: number; peakDeltaBytes: number } | null;
}

/**
 * Samples RSS of the targets and Redis used_memory every intervalMs. VmHWM is reset at start
 * and read at stop as well, so a spike shorter than the interval is not missed.
 */
export class Sampler {
  private timer: NodeJS.Timeout | null = null;
  private readonly peaks = new Map<string, number>();
  private redisPeak = 0;
  private redisBaseline = 0;
  private samples = 0;
  private started = 0;
  private hwmReset = new Set<number>();
  private inFlight: Promise<void> | null = null;

  constructor(
    private readonly targets: Target[],
    private readonly redis: Redis | null,
    private readonly intervalMs = 200,
  ) {}

  async start(): Promise<void> {
    this.started = Date.now();
    for (const t of this.targets) if (resetPeakRss(t.pid)) this.hwmReset.add(t.pid);
    if (this.redis) {
      this.redisBaseline = await this.redisUsed();
      this.redisPeak = this.redisBaseline;
    }
    await this.tick();
    this.timer = setInterval(() => {
      if (!this.inFlight) this.inFlight = this.tick().finally(() => (this.inFlight = null));
    }, this.intervalMs);
  }

  async stop(): Promise<SampleResult> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.inFlight;
    await this.tick();
    for (const t of this.targets) {
      if (!this.hwmReset.has(t.pid)) continue;
      const hwm = hwmBytes(t.pid);
      if (hwm !== null) this.peaks.set(t.name, Math.max(this.peaks.get(t.name) ?? 0, hwm));
    }
    return {
      durationMs: Date.now() - this.started,
      samples: this.samples,
      peakRss: Object.fromEntries(this.peaks),
      redis: this.redis ? { baselineBytes: this.redisBaseline, peakBytes: this.redisPeak, peakDeltaBytes: this.redisPeak - this.redisBaseline } : null,
    };
  }

  private async tick(): Promise<void> {
    this.samples++;
    for (const t of this.targets) {
      const rss = rssBytes(t.pid);
      if (rss !== null) this.peaks.set(t.name, Math.max(this.peaks.get(t.name) ?? 0, rss));
    }
    if (this.redis) this.redisPeak = Math.max(this.redisPeak, await this.redisUsed());
  }

  private async redisUsed(): Promise<number> {
    try {
      const info = await this.redis!.info('memory');
      return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
    } catch {
      return 0;
    }
  }
}

export const BENCH_CPU = 'bench process (uploads, polling)';

/** CPU time consumed by groups of processes between snapshot() and diff(). */
export class CpuMeter {
  private before = new Map<number, number>();
  private beforeSelf: NodeJS.CpuUsage = process.cpuUsage();

  constructor(private readonly groups: () => Record<string, number[]>) {}

  snapshot(): void {
    this.before.clear();
    for (const pids of Object.values(this.groups())) for (const pid of pids) this.before.set(pid, cpuMs(pid) ?? 0);
    this.beforeSelf = process.cpuUsage();
  }

  /** CPU ms per group since snapshot(); a process that appeared since counts from its start. */
  diff(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [group, pids] of Object.entries(this.groups())) {
      let total = 0;
      for (const pid of pids) {
        const now = cpuMs(pid);
        if (now !== null) total += now - (this.before.get(pid) ?? 0);
      }
      out[group] = total;
    }
    const self = process.cpuUsage(this.beforeSelf);
    out[BENCH_CPU] = (self.user + self.system) / 1000;
    return out;
  }
}
