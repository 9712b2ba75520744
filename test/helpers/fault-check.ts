import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ApiKeyRepo } from '../../src/db/api-key-repo.js';
import type { StageName } from '../../src/shared/config.js';
import { distinctJpeg, photo } from './fixtures.js';
import { LOG_DIR, sleep, waitFor, type Proc, type Stack } from './stack.js';

/**
 * Shared pieces of the fault suites: a stream of uploads that records every answer, and one
 * check that every accepted upload ended in exactly one final state with the matching rows
 * and objects.
 */

const run = promisify(execFile);

/** Small real JPEGs; distinctJpeg makes every upload's bytes unique, so none is a duplicate. */
export const SMALL_JPEGS = ['jpg/gps/DSCN0010.jpg', 'jpg/gps/DSCN0012.jpg', 'jpg/gps/DSCN0025.jpg', 'jpg/gps/DSCN0027.jpg'];

/** Runs a command with a time limit; fault tests use it for the services' own control tools. */
export async function sh(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await run(cmd, args, { timeout: timeoutMs });
  return stdout;
}

/** A tenant of its own inside a shared stack, so each case's photos, rows and objects are told apart. */
export async function newTenant(stack: Stack, label: string): Promise<{ tenant: string; key: string }> {
  const tenant = `${label}_${Math.random().toString(36).slice(2, 8)}`;
  const { key } = await new ApiKeyRepo(stack.db).create(tenant);
  return { tenant, key };
}

/** The running worker process of a role started by the stack (workers: 'each' or startWorkers([role])). */
export function workerProc(stack: Stack, role: StageName): Proc {
  const p = stack.procs.find((x) => x.name === `worker-${role}` && x.running);
  assert.ok(p, `a running worker process for ${role}`);
  return p;
}

export interface UploadOutcome {
  /** HTTP status, or 0 when no answer came (connection refused/reset, timeout). */
  status: number;
  id: string | null;
  retryAfter: string | null;
  contentType: string | null;
  body: unknown;
  error: string | null;
  at: number;
}

/**
 * Uploads distinct JPEGs with a few clients in parallel until `max` uploads were sent or stop()
 * is called. Every answer is recorded; nothing is retried, so each 202 is one photo. With
 * `hold`, the stream sends only that many and waits for allow(n) to go on: a test can then
 * inject a fault between two bursts, at the same point of the stream on a fast or slow machine.
 */
export class UploadStream {
  readonly results: UploadOutcome[] = [];
  private sent = 0;
  private cap: number;
  private stopped = false;
  private running: Promise<void> | null = null;

  constructor(
    private readonly stack: Stack,
    private readonly key: string,
    private readonly opts: { max: number; concurrency: number; salt: string; gapMs?: number; hold?: number },
  ) {
    this.cap = Math.min(opts.hold ?? opts.max, opts.max);
  }

  /** Lets the stream go on up to n uploads in all. */
  allow(n: number): void {
    this.cap = Math.min(Math.max(this.cap, n), this.opts.max);
  }

  start(): this {
    const sources = SMALL_JPEGS.map((f) => photo(f));
    this.running = Promise.all(
      Array.from({ length: this.opts.concurrency }, async () => {
        while (!this.stopped && this.sent < this.opts.max) {
          if (this.sent >= this.cap) {
            await sleep(20);
            continue;
          }
          const n = this.sent++;
          const bytes = distinctJpeg(sources[n % sources.length]!, `${this.opts.salt}-${n}`);
          this.results.push(await this.uploadOnce(bytes));
          if (this.opts.gapMs) await sleep(this.opts.gapMs);
        }
      }),
    ).then(() => undefined);
    return this;
  }

  private async uploadOnce(bytes: Buffer): Promise<UploadOutcome> {
    const at = Date.now();
    try {
      const res = await fetch(`${this.stack.apiUrl}/v1/photos`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.key}`, 'content-type': 'image/jpeg' },
        body: bytes,
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // kept as text: the assertions report it
      }
      const id = res.status === 202 ? ((body as { id?: string }).id ?? null) : null;
      return { status: res.status, id, retryAfter: res.headers.get('retry-after'), contentType: res.headers.get('content-type'), body, error: null, at };
    } catch (err) {
      return { status: 0, id: null, retryAfter: null, contentType: null, body: null, error: (err as Error).message, at };
    }
  }

  /** Resolves when `max` uploads have been answered (or stop() was called). */
  async done(): Promise<void> {
    await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  get accepted(): string[] {
    return this.results.filter((r) => r.status === 202 && r.id).map((r) => r.id!);
  }

  statusCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.results) out[r.status] = (out[r.status] ?? 0) + 1;
    return out;
  }

  async waitAccepted(n: number, timeoutMs = 60_000): Promise<void> {
    await waitFor(`${n} accepted uploads (have ${this.accepted.length})`, async () => this.accepted.length >= n, timeoutMs, 50);
  }
}

/** A refused upload must say why in our JSON shape and when to come back; never a 500. */
export function assertProper503(r: UploadOutcome): void {
  assert.equal(r.status, 503);
  assert.match(r.contentType ?? '', /application\/json/, `503 content type: ${r.contentType}`);
  const err = (r.body as { error?: { code?: string; message?: string } }).error;
  assert.equal(err?.code, 'service_unavailable', `503 body: ${JSON.stringify(r.body)}`);
  assert.ok(err?.message, '503 body has a message');
  assert.match(r.retryAfter ?? '', /^\d+$/, '503 has Retry-After');
}

export interface Outcomes {
  complete: string[];
  failed: Map<string, { stage: string; reason: string; code: string | null }>;
  /** "stage done" log lines beyond one per photo and stage: stages re-run after a redelivery. */
  stageReruns: number;
}

/**
 * Waits until every accepted photo is final, then checks each against Postgres, S3 and the
 * worker logs:
 *  - the tenant has exactly the accepted photos (no extra row from a refused upload, none lost);
 *  - complete: every stage done or skipped, exactly the three variant rows with their keys, and
 *    exactly the three objects under <tenant>/<id>/;
 *  - failed: only where `failedReason` allows it, with a reason that matches it;
 *  - no duplicates (every upload had distinct bytes);
 *  - at most one "photo complete" per photo (the completion is observed once, however often a
 *    stage was redelivered).
 */
export async function checkOutcomes(
  stack: Stack,
  tenant: string,
  accepted: string[],
  opts: { timeoutMs?: number; failedReason?: RegExp } = {},
): Promise<Outcomes> {
  assert.equal(new Set(accepted).size, accepted.length, 'every 202 carried a new photo id');
  if (accepted.length > 0) await stack.waitAllFinal(accepted, opts.timeoutMs ?? 120_000);

  const { rows } = await stack.db.query(`SELECT id, status, error, stages FROM photos WHERE tenant_id = $1`, [tenant]);
  assert.deepEqual(rows.map((r) => r.id as string).sort(), [...accepted].sort(), 'the tenant has exactly one row per accepted upload');

  const variants = await stack.db.query(`SELECT photo_id, kind, s3_key FROM photo_variants WHERE photo_id = ANY($1::uuid[]) ORDER BY kind`, [accepted]);
  const variantsOf = new Map<string, { kind: string; key: string }[]>();
  for (const v of variants.rows) variantsOf.set(v.photo_id, [...(variantsOf.get(v.photo_id) ?? []), { kind: v.kind, key: v.s3_key }]);

  const objectsOf = await listObjects(stack, `${tenant}/`);

  const complete: string[] = [];
  const failed: Outcomes['failed'] = new Map();
  for (const r of rows) {
    const id = r.id as string;
    const objects = (objectsOf.get(id) ?? []).sort();
    if (r.status === 'complete') {
      complete.push(id);
      const open = Object.entries(r.stages as Record<string, string>).filter(([, s]) => s !== 'done' && s !== 'skipped');
      assert.deepEqual(open, [], `photo ${id} is complete with every stage done`);
      assert.deepEqual(
        variantsOf.get(id),
        ['framed', 'original', 'thumbnail'].map((kind) => ({ kind, key: `${tenant}/${id}/${kind}.jpg` })),
        `photo ${id}: exactly three variant rows`,
      );
      assert.deepEqual(objects, ['framed.jpg', 'original.jpg', 'thumbnail.jpg'], `photo ${id}: exactly three objects in S3`);
    } else if (r.status === 'failed') {
      const error = r.error as { stage: string; reason: string; code?: string } | null;
      assert.ok(opts.failedReason, `photo ${id} failed unexpectedly: ${JSON.stringify(error)}`);
      assert.ok(error?.reason, `failed photo ${id} has a reason`);
      assert.match(error.reason, opts.failedReason, `failed photo ${id}: ${JSON.stringify(error)}`);
      failed.set(id, { stage: error.stage, reason: error.reason, code: error.code ?? null });
    } else {
      assert.fail(`photo ${id} ended ${r.status}; every upload had distinct bytes`);
    }
  }

  const logs = readStageLogs(stack, new Set(accepted));
  for (const [id, n] of logs.completions) assert.ok(n <= 1, `photo ${id} was completed ${n} times`);
  let stageReruns = 0;
  for (const n of logs.stageDone.values()) stageReruns += n - 1;
  return { complete, failed, stageReruns };
}

/** Object names per photo id under a prefix (<tenant>/<id>/<name>). */
export async function listObjects(stack: Stack, prefix: string): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  let token: string | undefined;
  for (let page = 0; page < 100; page++) {
    const res = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.config.S3_BUCKET, Prefix: prefix, ContinuationToken: token }));
    for (const o of res.Contents ?? []) {
      const [, id, name] = (o.Key ?? '').split('/');
      if (id && name) out.set(id, [...(out.get(id) ?? []), name]);
    }
    if (!res.IsTruncated) return out;
    token = res.NextContinuationToken;
  }
  throw new Error(`more than 100 pages of objects under ${prefix}`);
}

export interface LogLine {
  msg?: string;
  stage?: string;
  photoId?: string;
  code?: string;
  attempt?: number;
  [k: string]: unknown;
}

/** Every JSON line the stack's worker processes wrote (all incarnations append to one file per role). */
export function workerLogLines(stack: Stack): LogLine[] {
  const lines: LogLine[] = [];
  if (!existsSync(LOG_DIR)) return lines;
  for (const f of readdirSync(LOG_DIR).filter((n) => n.startsWith(`${stack.name}-worker-`))) {
    for (const line of readFileSync(join(LOG_DIR, f), 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(line) as LogLine);
      } catch {
        // a line cut short by kill -9
      }
    }
  }
  return lines;
}

function readStageLogs(stack: Stack, ids: Set<string>): { stageDone: Map<string, number>; completions: Map<string, number> } {
  const stageDone = new Map<string, number>();
  const completions = new Map<string, number>();
  for (const l of workerLogLines(stack)) {
    if (!l.photoId || !ids.has(l.photoId)) continue;
    if (l.msg === 'stage done') stageDone.set(`${l.photoId}:${l.stage}`, (stageDone.get(`${l.photoId}:${l.stage}`) ?? 0) + 1);
    if (l.msg === 'photo complete') completions.set(l.photoId, (completions.get(l.photoId) ?? 0) + 1);
  }
  return { stageDone, completions };
}
