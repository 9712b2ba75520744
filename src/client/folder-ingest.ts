import { readFile } from 'node:fs/promises';
import { ApiError, type ApiClient, type PhotoStatusView } from './api-client.js';
import { scanFolder, sha256File, type FolderFile, type Skipped } from './folder-scan.js';

export interface IngestProgress {
  total: number;
  totalBytes: number;
  done: number;
  doneBytes: number;
  accepted: number;
  duplicate: number;
  rejected: number;
}

export interface IngestItem {
  name: string;
  sha256: string;
  /** accepted: queued now; duplicate: the tenant has these bytes already (photoId is that photo); rejected: the API refused them. */
  outcome: 'accepted' | 'duplicate' | 'rejected';
  photoId: string | null;
  reason: string | null;
  /** With --wait: the photo's final status and place. */
  final?: { status: string; reason: string | null; place: string | null };
}

export interface IngestReport {
  folder: string;
  files: number;
  bytes: number;
  accepted: number;
  duplicate: number;
  rejected: number;
  skipped: Skipped[];
  items: IngestItem[];
  /** With --wait: counts of final states, and places found. */
  final?: { complete: number; duplicate: number; failed: number; places: Record<string, number> };
  seconds: number;
}

const CHECK_BATCH = 1_000;
const MAX_TRIES = 8;

/**
 * Uploads a folder's images through the API: asks the server by checksum first (nothing it
 * already has is sent again, so a run interrupted by Ctrl-C and started again only sends what is
 * missing), uploads the rest with their checksum, `concurrency` at a time, backing off when the
 * API says so (429/503 with Retry-After), and with `wait` follows every photo to its final state.
 */
export async function ingestFolder(
  api: ApiClient,
  dir: string,
  opts: { recursive: boolean; concurrency: number; wait: boolean; onProgress?: (p: IngestProgress) => void; onNote?: (text: string) => void; signal?: AbortSignal },
): Promise<IngestReport> {
  const started = Date.now();
  const { files, skipped } = await scanFolder(dir, { recursive: opts.recursive });
  for (const s of skipped) opts.onNote?.(`skipped ${s.name}: ${s.reason}`);
  const progress: IngestProgress = { total: files.length, totalBytes: files.reduce((n, f) => n + f.bytes, 0), done: 0, doneBytes: 0, accepted: 0, duplicate: 0, rejected: 0 };
  const report = (p: IngestProgress) => opts.onProgress?.({ ...p });
  report(progress);

  const items: IngestItem[] = [];
  const finish = (f: FolderFile, item: IngestItem) => {
    items.push(item);
    progress.done++;
    progress.doneBytes += f.bytes;
    progress[item.outcome]++;
    report(progress);
  };

  // Checksums first, then one question to the server per 1,000 files.
  for (let i = 0; i < files.length; i += CHECK_BATCH) {
    const batch = files.slice(i, i + CHECK_BATCH);
    const sums = await mapLimit(batch, opts.concurrency, (f) => sha256File(f.path));
    const known = new Map((await api.check(sums)).filter((r) => r.exists).map((r) => [r.sha256, r]));
    const todo: { f: FolderFile; sha256: string }[] = [];
    batch.forEach((f, j) => {
      const sha256 = sums[j]!;
      const k = known.get(sha256);
      if (k) finish(f, { name: f.name, sha256, outcome: 'duplicate', photoId: k.photoId ?? null, reason: 'already on the server' });
      else todo.push({ f, sha256 });
    });
    await mapLimit(todo, opts.concurrency, async ({ f, sha256 }) => {
      if (opts.signal?.aborted) return;
      finish(f, await uploadOne(api, f, sha256, opts.signal));
    });
    if (opts.signal?.aborted) break;
  }

  const out: IngestReport = {
    folder: dir,
    files: files.length,
    bytes: progress.totalBytes,
    accepted: progress.accepted,
    duplicate: progress.duplicate,
    rejected: progress.rejected,
    skipped,
    items,
    seconds: 0,
  };
  if (opts.wait && !opts.signal?.aborted) out.final = await waitForFinal(api, items, opts.concurrency, opts.signal);
  out.seconds = (Date.now() - started) / 1000;
  return out;
}

async function uploadOne(api: ApiClient, f: FolderFile, sha256: string, signal?: AbortSignal): Promise<IngestItem> {
  const bytes = await readFile(f.path);
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await api.upload(bytes, { filename: f.name.split(/[\\/]/).pop() ?? f.name, sha256 });
      return { name: f.name, sha256, outcome: r.duplicate ? 'duplicate' : 'accepted', photoId: r.id, reason: r.duplicate ? 'already on the server' : null };
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(0, 'error', (err as Error).message);
      const again = e.status === 0 || e.status === 429 || e.status === 503 || e.status >= 500;
      if (!again || attempt >= MAX_TRIES || signal?.aborted) return { name: f.name, sha256, outcome: 'rejected', photoId: null, reason: `${e.code}: ${e.message}` };
      await sleep(Math.min(60_000, (e.retryAfterSeconds ?? 2 ** attempt) * 1000));
    }
  }
}

async function waitForFinal(api: ApiClient, items: IngestItem[], concurrency: number, signal?: AbortSignal): Promise<NonNullable<IngestReport['final']>> {
  const pending = new Set(items.filter((i) => i.photoId && i.outcome !== 'rejected'));
  while (pending.size > 0 && !signal?.aborted) {
    await mapLimit([...pending], concurrency, async (item) => {
      let p: PhotoStatusView;
      try {
        p = await api.photo(item.photoId!);
      } catch {
        return;
      }
      if (p.status === 'queued' || p.status === 'processing') return;
      const place = p.place?.name ? `${p.place.name}, ${p.place.countryName ?? p.place.countryCode ?? ''}`.replace(/, $/, '') : p.place?.countryName ?? null;
      item.final = { status: p.status, reason: p.error ? `${p.error.stage}: ${p.error.reason}` : null, place };
      pending.delete(item);
    });
    if (pending.size > 0) await sleep(1_000);
  }
  const final = { complete: 0, duplicate: 0, failed: 0, places: {} as Record<string, number> };
  for (const i of items) {
    if (!i.final) continue;
    if (i.final.status === 'complete') final.complete++;
    else if (i.final.status === 'duplicate') final.duplicate++;
    else if (i.final.status === 'failed') final.failed++;
    if (i.final.place) final.places[i.final.place] = (final.places[i.final.place] ?? 0) + 1;
  }
  return final;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
      for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]!);
    }),
  );
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
