import { cpus, totalmem, release, availableParallelism, loadavg } from 'node:os';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import sharp from 'sharp';
import type { Stack } from '../../test/helpers/stack.js';

const require = createRequire(import.meta.url);

export interface MachineInfo {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  loadAverageAtStart: number[];
}

export interface Versions {
  node: string;
  sharp: string;
  libvips: string;
  sharpConcurrency: number;
  uvThreadpoolSize: string;
  autocannon: string;
  postgres?: string;
  redis?: string;
  rabbitmq?: string;
  python?: string;
  pil?: string;
}

export function machineInfo(): MachineInfo {
  let model = cpus()[0]?.model ?? 'unknown';
  try {
    // Some VMs report a generic name in os.cpus(); /proc/cpuinfo may say more.
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m?.[1] && m[1].length > model.length) model = m[1];
  } catch {
    // not Linux
  }
  return {
    cores: availableParallelism(),
    cpuModel: model.trim(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    loadAverageAtStart: loadavg().map((v) => Math.round(v * 100) / 100),
  };
}

export function localVersions(): Versions {
  const pkg = (name: string) => (require(`${name}/package.json`) as { version: string }).version;
  return {
    node: process.version,
    sharp: sharp.versions.sharp ?? pkg('sharp'),
    libvips: sharp.versions.vips,
    sharpConcurrency: sharp.concurrency(),
    uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? '4 (default)',
    autocannon: pkg('autocannon'),
  };
}

/** Versions of the services, read from the stack's own connections (asked twice: a service may be restarting). */
export async function serviceVersions(stack: Stack): Promise<Pick<Versions, 'postgres' | 'redis' | 'rabbitmq'>> {
  const first = await serviceVersionsOnce(stack);
  if (!Object.values(first).includes('unknown')) return first;
  await new Promise((r) => setTimeout(r, 2_000));
  const second = await serviceVersionsOnce(stack);
  return { postgres: pick(first.postgres, second.postgres), redis: pick(first.redis, second.redis), rabbitmq: pick(first.rabbitmq, second.rabbitmq) };
}

const pick = (a: string | undefined, b: string | undefined) => (a && a !== 'unknown' ? a : b);

async function serviceVersionsOnce(stack: Stack): Promise<Pick<Versions, 'postgres' | 'redis' | 'rabbitmq'>> {
  const out: Pick<Versions, 'postgres' | 'redis' | 'rabbitmq'> = {};
  try {
    out.postgres = ((await stack.db.query('SHOW server_version')).rows[0]?.server_version as string | undefined) ?? 'unknown';
  } catch {
    out.postgres = 'unknown';
  }
  try {
    out.redis = /redis_version:(\S+)/.exec(await stack.redis.info('server'))?.[1] ?? 'unknown';
  } catch {
    out.redis = 'unknown';
  }
  try {
    out.rabbitmq = await stack.amqp(async (ch) => String(ch.connection.serverProperties.version));
  } catch {
    out.rabbitmq = 'unknown';
  }
  return out;
}
