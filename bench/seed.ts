import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Corpus } from './lib/corpus.js';
import { median } from './lib/stats.js';

/**
 * (3) The seed baseline: bench/seed_worker.py (the Kapture seed's worker algorithm in Python +
 * PIL) over the same photos with one process per core. Installs nothing: without Debian's
 * python3-pil the row is reported as skipped, with the command that installs it.
 */

export const PYTHON = '/usr/bin/python3';
const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'seed_worker.py');

export interface SeedRun {
  label: string;
  python: string;
  pil: string;
  procs: number;
  photos: number;
  photosPerSec: number;
}

export type SeedResult =
  | { skipped: false; label: string; python: string; pil: string; procs: number; photosPerRep: number; reps: number[]; medianPhotosPerSec: number; script: string }
  | { skipped: true; reason: string; install: string };

export const SEED_INSTALL = 'apt-get install -y python3-pil   (Debian package for /usr/bin/python3)';

export function seedAvailable(): { ok: true } | { ok: false; reason: string } {
  const r = spawnSync(PYTHON, ['-c', 'import PIL'], { encoding: 'utf8' });
  if (r.error) return { ok: false, reason: `${PYTHON} not runnable: ${r.error.message}` };
  if (r.status !== 0) return { ok: false, reason: `${PYTHON} cannot import PIL: ${(r.stderr || '').trim().split('\n').pop()}` };
  return { ok: true };
}

/** One repetition of the seed worker over the corpus (its pool start and warm-up are not timed). */
export async function runSeedOnce(corpus: Corpus, o: { procs: number; repeat: number }): Promise<SeedRun> {
  const args = [SCRIPT, '--reps', '1', '--procs', String(o.procs), '--repeat', String(o.repeat), ...corpus.photos.map((p) => p.path)];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`seed_worker.py exited ${code}: ${stderr.trim()}`))));
  });
  const parsed = JSON.parse(out.trim().split('\n').pop() ?? '{}') as {
    label: string;
    python: string;
    pil: string;
    procs: number;
    photos: number;
    reps: { seconds: number; photosPerSec: number }[];
  };
  return { label: parsed.label, python: parsed.python, pil: parsed.pil, procs: parsed.procs, photos: parsed.photos, photosPerSec: parsed.reps[0]?.photosPerSec ?? Number.NaN };
}

export function summarizeSeed(runs: SeedRun[]): SeedResult {
  const first = runs[0];
  if (!first) return { skipped: true, reason: 'no runs', install: SEED_INSTALL };
  const reps = runs.map((r) => r.photosPerSec);
  return {
    skipped: false,
    label: first.label,
    python: first.python,
    pil: first.pil,
    procs: first.procs,
    photosPerRep: first.photos,
    reps,
    medianPhotosPerSec: median(reps),
    script: 'bench/seed_worker.py',
  };
}
