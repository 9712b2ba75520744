import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { ApiClient, ApiError, type PhotoStatusView } from '../../client/api-client.js';
import { ingestFolder, type IngestProgress, type IngestReport } from '../../client/folder-ingest.js';
import { positiveIntOption, UsageError } from '../args.js';
import { out } from '../tool-context.js';

/** Exit code when the command worked but something it reports failed (a photo failed, a file was rejected, an id is unknown). */
export const EXIT_SOMETHING_FAILED = 3;

interface ClientOptions {
  api?: string;
  key?: string;
  json?: boolean;
}

function clientOf(o: ClientOptions): ApiClient {
  const key = o.key ?? process.env.PHOTOPIPE_API_KEY;
  if (!key) throw new UsageError('no API key: set PHOTOPIPE_API_KEY or pass --key');
  return new ApiClient(o.api ?? process.env.PHOTOPIPE_API_URL ?? 'http://localhost:8080', key);
}

const withClientOptions = (c: Command) =>
  c
    .option('--api <URL>', 'the API (default: PHOTOPIPE_API_URL or http://localhost:8080)')
    .option('--key <KEY>', 'a tenant API key (default: PHOTOPIPE_API_KEY)')
    .option('--json', 'print one JSON document');

const mb = (bytes: number) => (bytes / 1_048_576).toFixed(1);

/** Progress on stderr: a live bar on a terminal, a plain line every two seconds otherwise. */
function progressReporter(): { update: (p: IngestProgress) => void; note: (text: string) => void; stop: () => void } {
  const started = Date.now();
  const rates = (p: IngestProgress) => {
    const s = Math.max(0.001, (Date.now() - started) / 1000);
    const filesPerSec = p.done / s;
    return { filesPerSec, mbPerSec: p.doneBytes / 1_048_576 / s, etaSec: filesPerSec > 0 ? Math.round((p.total - p.done) / filesPerSec) : null };
  };
  if (process.stderr.isTTY) {
    const bar = new SingleBar(
      { stream: process.stderr, format: '{bar} {value}/{total} files | {fps} files/s {mbps} MB/s | ETA {eta_s}s | accepted {accepted} duplicate {duplicate} rejected {rejected}', hideCursor: true },
      Presets.shades_classic,
    );
    let started = false;
    return {
      update: (p) => {
        const r = rates(p);
        const payload = { fps: r.filesPerSec.toFixed(1), mbps: r.mbPerSec.toFixed(1), accepted: p.accepted, duplicate: p.duplicate, rejected: p.rejected };
        if (!started) {
          bar.start(p.total, p.done, payload);
          started = true;
        } else bar.update(p.done, payload);
      },
      note: (text) => process.stderr.write(`${text}\n`),
      stop: () => bar.stop(),
    };
  }
  let last = 0;
  let latest: IngestProgress | null = null;
  const line = (p: IngestProgress) => {
    const r = rates(p);
    process.stderr.write(
      `ingest: ${p.done}/${p.total} files, ${mb(p.doneBytes)}/${mb(p.totalBytes)} MB, ${r.filesPerSec.toFixed(1)} files/s, ${r.mbPerSec.toFixed(1)} MB/s, ETA ${r.etaSec ?? '?'} s; accepted ${p.accepted}, duplicate ${p.duplicate}, rejected ${p.rejected}\n`,
    );
  };
  return {
    update: (p) => {
      latest = p;
      if (Date.now() - last >= 2_000 || p.done === p.total) {
        last = Date.now();
        line(p);
      }
    },
    note: (text) => process.stderr.write(`${text}\n`),
    stop: () => {
      if (latest && latest.done !== latest.total) line(latest);
    },
  };
}

function summary(r: IngestReport): string {
  const lines = [
    `${r.folder}: ${r.files} image files (${mb(r.bytes)} MB) in ${r.seconds.toFixed(1)} s; ${r.skipped.length} other files skipped`,
    '',
    '  uploaded (accepted)   ' + String(r.accepted).padStart(6),
    '  already there         ' + String(r.duplicate).padStart(6),
    '  rejected              ' + String(r.rejected).padStart(6),
  ];
  if (r.final) {
    lines.push('', '  complete              ' + String(r.final.complete).padStart(6), '  duplicate             ' + String(r.final.duplicate).padStart(6), '  failed                ' + String(r.final.failed).padStart(6));
    const places = Object.entries(r.final.places).sort((a, b) => b[1] - a[1]);
    if (places.length > 0) lines.push('', `  places found: ${places.map(([p, n]) => `${p} (${n})`).join(', ')}`);
  }
  const bad = r.items.filter((i) => i.outcome === 'rejected' || i.final?.status === 'failed');
  if (bad.length > 0) {
    lines.push('', '  problems:');
    for (const i of bad) lines.push(`    ${i.name}: ${i.outcome === 'rejected' ? `rejected (${i.reason})` : `failed (${i.final?.reason ?? 'unknown'})`}`);
  }
  return lines.join('\n');
}

/** The CLI's client commands: they talk to a running API with a tenant key, like any client. */
export function registerClientCommands(program: Command, exit: (code: number) => void): void {
  withClientOptions(
    program
      .command('ingest')
      .description('uploads a folder\'s images through the API, skipping what the server already has (by checksum); progress on stderr')
      .argument('<DIR>', 'the folder')
      .option('--recursive', 'include sub-folders')
      .option('--concurrency <N>', 'uploads at a time (default 4)', positiveIntOption('--concurrency'))
      .option('--wait', 'wait for every photo to be final, then print a summary with failures and places'),
  ).action(async (dir: string, o: ClientOptions & { recursive?: boolean; concurrency?: number; wait?: boolean }) => {
    const api = clientOf(o);
    const progress = progressReporter();
    const abort = new AbortController();
    const onSigint = () => {
      progress.note('interrupted: finishing the uploads in flight (run it again to continue)');
      abort.abort();
    };
    process.once('SIGINT', onSigint);
    let report: IngestReport;
    try {
      report = await ingestFolder(api, dir, { recursive: o.recursive ?? false, concurrency: o.concurrency ?? 4, wait: o.wait ?? false, onProgress: progress.update, onNote: progress.note, signal: abort.signal });
    } finally {
      progress.stop();
      process.off('SIGINT', onSigint);
    }
    out(o.json ? report : summary(report));
    if (report.rejected > 0 || (report.final?.failed ?? 0) > 0 || abort.signal.aborted) exit(EXIT_SOMETHING_FAILED);
  });

  withClientOptions(program.command('status').description('the status of photos by id').argument('<ID...>', 'photo ids')).action(async (ids: string[], o: ClientOptions) => {
    const api = clientOf(o);
    const results: (PhotoStatusView | { id: string; missing: true })[] = [];
    for (const id of ids) {
      try {
        results.push(await api.photo(id));
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) results.push({ id, missing: true });
        else throw err;
      }
    }
    if (o.json) out(ids.length === 1 ? results[0] : results);
    else
      out(
        results
          .map((r) => ('missing' in r ? `${r.id}  not found` : `${r.id}  ${r.status.padEnd(10)} ${r.place?.name ?? ''}${r.error ? `  ${r.error.stage}: ${r.error.reason}` : ''}`))
          .join('\n'),
      );
    if (results.some((r) => 'missing' in r || r.status === 'failed')) exit(EXIT_SOMETHING_FAILED);
  });

  const photos = program.command('photos').description('the tenant\'s photos');
  withClientOptions(
    photos
      .command('list')
      .description('newest first')
      .option('--status <S>', 'queued, processing, complete, duplicate or failed')
      .option('--limit <N>', 'how many (default 50; more are fetched page by page)', positiveIntOption('--limit')),
  ).action(async (o: ClientOptions & { status?: string; limit?: number }) => {
    const api = clientOf(o);
    const want = o.limit ?? 50;
    const items: PhotoStatusView[] = [];
    let cursor: string | undefined;
    do {
      const page = await api.photos({ status: o.status, limit: Math.min(200, want - items.length), cursor });
      items.push(...page.items);
      cursor = page.nextCursor ?? undefined;
    } while (cursor && items.length < want);
    if (o.json) out(items);
    else out(items.map((p) => `${p.id}  ${p.status.padEnd(10)} ${p.file?.originalName ?? ''}`).join('\n') || '(none)');
  });
}
