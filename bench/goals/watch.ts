import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { cpuMs, hwmBytes, pidsByComm, resetPeakRss, rssBytes } from '../lib/proc.js';
import { processStartTicks, type DefaultStack } from './default-stack.js';

/**
 * CPU time and peak memory of everything one photo costs, sampled from /proc every 200 ms while a
 * run lasts: every process of one `photopipe start` tree (found again each second by the ppid
 * walk, so a process started meanwhile counts too), the Postgres backends serving its database
 * (pg_stat_activity, each second), and the shared Redis and RabbitMQ servers.
 *
 * A process that exits during the run keeps the CPU it had at its last sample (at most 200 ms
 * missing); Postgres backends are discovered each second, so one that lived less than that is
 * not seen at all (the result says how many came and went).
 */

export const LOCAL_S3 = 'local-s3';
export const PG_GROUP = 'postgres (this database)';
export const REDIS_GROUP = 'redis-server (shared)';
export const RABBIT_GROUP = 'rabbitmq beam.smp (shared)';

type Kind = 'stack' | 'postgres' | 'shared';

interface Tracked {
  pid: number;
  startTicks: number;
  group: string;
  kind: Kind;
  cpuFirst: number;
  cpuLast: number;
  presentAtStart: boolean;
  gone: boolean;
  rssMax: number;
  hwm: number;
  hwmReset: boolean;
}

export interface GroupFigure {
  cpuMs: number;
  /** Sum over the group's processes of each one's own peak RSS (stack processes only). */
  peakRssBytes: number;
  processes: number;
}

export interface WatchResult {
  seconds: number;
  samples: number;
  groups: Record<string, GroupFigure>;
  /** CPU of every group except the local S3 stand-in (the bench's own process is never in it). */
  systemCpuMs: number;
  /** Sum of the peak RSS of every stack process except the local S3 stand-in (the supervisor included). */
  stackPeakRssBytes: number;
  postgres: { seen: number; atStart: number; atEnd: number; exitedDuring: number };
  stackProcesses: { pid: number; role: string; exitedDuring: boolean }[];
  hwmResetOk: boolean;
  benchCpuMs: number;
  /** Share of the machine's CPU time the hypervisor gave to others during the run (/proc/stat steal): noise. */
  stealPct: number;
}

/** [steal, total] jiffies of all CPUs (/proc/stat). */
function cpuTotals(): [number, number] {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    return [f[7] ?? 0, f.slice(0, 8).reduce((a, b) => a + b, 0)];
  } catch {
    return [0, 0];
  }
}

function ticksNow(): number {
  try {
    return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 100);
  } catch {
    return Number.MAX_SAFE_INTEGER;
  }
}

export class ProcWatch {
  private readonly tracked = new Map<number, Tracked>();
  private timer: NodeJS.Timeout | null = null;
  private busy: Promise<void> | null = null;
  private ticks = 0;
  private t0 = 0;
  private startTicks = 0;
  private benchCpu: NodeJS.CpuUsage = process.cpuUsage();
  private started = false;
  private stat0: [number, number] = [0, 0];

  constructor(
    private readonly stack: DefaultStack,
    private readonly monitor: pg.Client,
    private readonly intervalMs = 200,
  ) {}

  async start(): Promise<void> {
    this.t0 = performance.now();
    this.startTicks = ticksNow();
    this.stat0 = cpuTotals();
    for (const p of pidsByComm(['redis-server'])) this.add(p.pid, REDIS_GROUP, 'shared');
    for (const p of pidsByComm(['beam.smp'])) this.add(p.pid, RABBIT_GROUP, 'shared');
    await this.discover();
    for (const t of this.tracked.values()) if (t.kind === 'stack') t.hwmReset = resetPeakRss(t.pid);
    this.started = true;
    this.benchCpu = process.cpuUsage();
    this.sample();
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = this.tickOnce().finally(() => (this.busy = null));
    }, this.intervalMs);
  }

  private add(pid: number, group: string, kind: Kind): void {
    if (this.tracked.has(pid)) return;
    const startTicks = processStartTicks(pid);
    const cpu = cpuMs(pid);
    if (startTicks === null || cpu === null) return;
    // Existing before the run started: count from now. Started during the run: all of its CPU is
    // the run's, and its VmHWM is its peak within the run.
    const existedBefore = !this.started || startTicks < this.startTicks;
    this.tracked.set(pid, {
      pid,
      startTicks,
      group,
      kind,
      cpuFirst: existedBefore ? cpu : 0,
      cpuLast: cpu,
      presentAtStart: !this.started,
      gone: false,
      rssMax: 0,
      hwm: 0,
      hwmReset: !existedBefore,
    });
  }

  private async discover(): Promise<void> {
    for (const p of this.stack.processes()) this.add(p.pid, p.role, 'stack');
    try {
      for (const pid of await this.stack.pgBackends(this.monitor)) this.add(pid, PG_GROUP, 'postgres');
    } catch {
      // Postgres unreachable for a moment: the next pass finds them
    }
  }

  private async tickOnce(): Promise<void> {
    this.ticks++;
    if (this.ticks % Math.max(1, Math.round(1000 / this.intervalMs)) === 0) await this.discover();
    this.sample();
  }

  private sample(): void {
    for (const t of this.tracked.values()) {
      if (t.gone) continue;
      const cpu = cpuMs(t.pid);
      if (cpu === null || processStartTicks(t.pid) !== t.startTicks) {
        t.gone = true;
        continue;
      }
      t.cpuLast = cpu;
      if (t.kind === 'stack') {
        t.rssMax = Math.max(t.rssMax, rssBytes(t.pid) ?? 0);
        t.hwm = Math.max(t.hwm, hwmBytes(t.pid) ?? 0);
      }
    }
  }

  async stop(): Promise<WatchResult> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.busy;
    await this.discover();
    this.sample();
    const bench = process.cpuUsage(this.benchCpu);
    const stat1 = cpuTotals();
    const groups: Record<string, GroupFigure> = {};
    let system = 0;
    let rss = 0;
    let hwmOk = true;
    for (const t of this.tracked.values()) {
      const g = (groups[t.group] ??= { cpuMs: 0, peakRssBytes: 0, processes: 0 });
      const cpu = Math.max(0, t.cpuLast - t.cpuFirst);
      g.cpuMs += cpu;
      g.processes++;
      if (t.group !== LOCAL_S3) system += cpu;
      if (t.kind === 'stack') {
        if (!t.hwmReset) hwmOk = false;
        // VmHWM since the reset (or since the process started during the run); the samples as a floor.
        const peak = Math.max(t.rssMax, t.hwmReset ? t.hwm : 0);
        g.peakRssBytes += peak;
        if (t.group !== LOCAL_S3) rss += peak;
      }
    }
    const pgs = [...this.tracked.values()].filter((t) => t.kind === 'postgres');
    return {
      seconds: (performance.now() - this.t0) / 1000,
      samples: this.ticks + 1,
      groups,
      systemCpuMs: system,
      stackPeakRssBytes: rss,
      postgres: { seen: pgs.length, atStart: pgs.filter((t) => t.presentAtStart).length, atEnd: pgs.filter((t) => !t.gone).length, exitedDuring: pgs.filter((t) => t.gone).length },
      stackProcesses: [...this.tracked.values()].filter((t) => t.kind === 'stack').map((t) => ({ pid: t.pid, role: t.group, exitedDuring: t.gone })),
      hwmResetOk: hwmOk,
      benchCpuMs: (bench.user + bench.system) / 1000,
      stealPct: stat1[1] > this.stat0[1] ? (100 * (stat1[0] - this.stat0[0])) / (stat1[1] - this.stat0[1]) : Number.NaN,
    };
  }
}
