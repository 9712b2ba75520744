import { request as httpRequest, type ClientRequest } from 'node:http';
import autocannon from 'autocannon';
import { sleep } from '../../test/helpers/stack.js';
import type { DefaultStack } from './default-stack.js';

/**
 * The load the goals rows put on a stack, from outside: uploads over HTTP with bounded concurrency
 * followed through Postgres until every photo is final; autocannon with a distinct body per
 * request; dashboard pages as server-sent-event readers.
 */

export interface E2EResult {
  label: string;
  n: number;
  /** Photos that reached complete, duplicate or failed. */
  finished: number;
  uploadSeconds: number;
  /** From the first upload to the last photo's completed_at (Postgres). */
  seconds: number;
  photosPerSec: number;
  statuses: Record<string, number>;
  /** Answers other than 202 (each retried), by status code or error. */
  non202: Record<string, number>;
  stuck: { count: number; afterMs: number; examples: { id: string; status: string; stages: unknown }[] } | null;
}

const FINAL = ['complete', 'duplicate', 'failed'];

/** One upload; anything but 202 is counted and retried (bounded). */
async function upload(stack: DefaultStack, body: Buffer, non202: Record<string, number>): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    let why: string;
    try {
      const res = await fetch(`${stack.url}/v1/photos`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'image/jpeg' },
        body,
        signal: AbortSignal.timeout(60_000),
      });
      const json = (await res.json().catch(() => ({}))) as { id?: string };
      if (res.status === 202 && json.id) return json.id;
      why = String(res.status);
    } catch (err) {
      why = `error: ${(err as Error).name}`;
    }
    non202[why] = (non202[why] ?? 0) + 1;
    if (attempt >= 8) throw new Error(`upload refused ${attempt} times (last: ${why})`);
    await sleep(200 * 2 ** Math.min(attempt, 5));
  }
}

/**
 * n uploads of the given bodies, `concurrency` in flight, then waits until every photo is final.
 * A photo that makes no progress is not waited for forever: when none became final for stallMs,
 * the rest are reported as stuck and the figures count the finished ones.
 */
export async function e2eRun(stack: DefaultStack, label: string, bodies: Buffer[], o: { concurrency: number; stallMs: number }): Promise<E2EResult> {
  const db = stack.db;
  if (!db) throw new Error('stack has no database connection');
  const non202: Record<string, number> = {};
  const ids: string[] = new Array(bodies.length);
  let next = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      while (next < bodies.length) {
        const i = next++;
        ids[i] = await upload(stack, bodies[i]!, non202);
      }
    }),
  );
  const uploadSeconds = (Date.now() - t0) / 1000;
  let last = -1;
  let lastProgress = Date.now();
  let stuck: E2EResult['stuck'] = null;
  for (;;) {
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM photos WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])`, [ids, FINAL]);
    const n = rows[0]!.n;
    if (n === ids.length) break;
    if (n !== last) {
      last = n;
      lastProgress = Date.now();
    } else if (Date.now() - lastProgress > o.stallMs) {
      const s = await db.query<{ id: string; status: string; stages: unknown }>(
        `SELECT id, status, stages FROM photos WHERE id = ANY($1::uuid[]) AND NOT (status = ANY($2::text[])) LIMIT 5`,
        [ids, FINAL],
      );
      stuck = { count: ids.length - n, afterMs: o.stallMs, examples: s.rows };
      break;
    }
    await sleep(250);
  }
  const { rows } = await db.query<{ t: number | null; n: number }>(
    `SELECT (extract(epoch FROM max(COALESCE(completed_at, updated_at))) * 1000)::float8 AS t, count(*)::int AS n
       FROM photos WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])`,
    [ids, FINAL],
  );
  const seconds = ((rows[0]!.t ?? Date.now()) - t0) / 1000;
  const st = await db.query<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM photos WHERE id = ANY($1::uuid[]) GROUP BY status`, [ids]);
  return {
    label,
    n: bodies.length,
    finished: rows[0]!.n,
    uploadSeconds,
    seconds,
    photosPerSec: rows[0]!.n / seconds,
    statuses: Object.fromEntries(st.rows.map((r) => [r.status, r.n])),
    non202,
    stuck,
  };
}


// ---------------------------------------------------------------------------------------------

/**
 * An endless supply of distinct request bodies without a copy of our own: the JPEG with a comment
 * segment after SOI whose 16 digits are overwritten with a counter just before autocannon builds
 * each request (it copies the body into the request buffer synchronously, in buildRequest).
 */
export class DistinctBody {
  readonly buffer: Buffer;
  private readonly at: number;
  private n = 0;

  constructor(jpeg: Buffer, salt: string) {
    if (jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw new Error('not a JPEG');
    const text = Buffer.from(`photopipe-bench:${salt}:0000000000000000`);
    const seg = Buffer.alloc(4 + text.length);
    seg[0] = 0xff;
    seg[1] = 0xfe;
    seg.writeUInt16BE(text.length + 2, 2);
    text.copy(seg, 4);
    this.buffer = Buffer.concat([jpeg.subarray(0, 2), seg, jpeg.subarray(2)]);
    this.at = 2 + 4 + text.length - 16;
  }

  next(): Buffer {
    this.buffer.write(String(this.n++).padStart(16, '0'), this.at, 'latin1');
    return this.buffer;
  }

  get made(): number {
    return this.n;
  }
}

export interface LoadResult {
  durationSec: number;
  /** Answers 202 per second: the only ones counted as uploads. */
  acceptedPerSec: number;
  accepted: number;
  statusCounts: Record<string, number>;
  non202: number;
  errors: number;
  timeouts: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Photos of the stack not final yet when the run started: the pipeline's work in the background. */
  backlogAtStart?: number;
}

/** autocannon POSTs of distinct JPEG bodies at a fixed concurrency for durationSec. */
export async function uploadLoad(url: string, headers: Record<string, string>, body: DistinctBody, o: { connections: number; durationSec: number }): Promise<LoadResult> {
  const counts: Record<string, number> = {};
  const result = await autocannon({
    url,
    connections: o.connections,
    pipelining: 1,
    duration: o.durationSec,
    timeout: 30,
    requests: [
      {
        method: 'POST',
        headers: { ...headers, 'content-type': 'image/jpeg' },
        setupRequest: (req) => ({ ...req, body: body.next() }),
        onResponse: (status: number) => {
          counts[status] = (counts[status] ?? 0) + 1;
        },
      },
    ],
  });
  const accepted = counts['202'] ?? 0;
  return {
    durationSec: result.duration,
    acceptedPerSec: accepted / result.duration,
    accepted,
    statusCounts: counts,
    non202: Object.entries(counts).reduce((s, [k, v]) => (k === '202' ? s : s + v), 0),
    errors: result.errors,
    timeouts: result.timeouts,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
  };
}

// ---------------------------------------------------------------------------------------------

/** Open dashboard pages: each one a server-sent-events reader of the dashboard's stream, reading everything. */
export class DashboardReaders {
  private readonly reqs: ClientRequest[] = [];
  readonly events: number[] = [];
  readonly bytes: number[] = [];
  status: number | null = null;

  constructor(
    private readonly url: string,
    private readonly adminKey: string,
  ) {}

  /** Opens n streams and waits until each has delivered its first snapshot (or fails). */
  async open(n: number, timeoutMs = 15_000): Promise<void> {
    const firsts: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      this.events.push(0);
      this.bytes.push(0);
      firsts.push(
        new Promise<void>((resolve, reject) => {
          const req = httpRequest(`${this.url}/v1/admin/dashboard/stream`, { headers: { authorization: `Bearer ${this.adminKey}`, accept: 'text/event-stream' } }, (res) => {
            this.status = res.statusCode ?? null;
            if (res.statusCode !== 200) {
              res.resume();
              reject(new Error(`dashboard stream answered ${res.statusCode}`));
              return;
            }
            res.on('data', (chunk: Buffer) => {
              this.bytes[i]! += chunk.length;
              const k = chunk.toString('latin1').split('event: snapshot').length - 1;
              if (k > 0) {
                this.events[i]! += k;
                resolve();
              }
            });
            res.on('error', () => {});
          });
          req.on('error', (err) => reject(err));
          req.end();
          this.reqs.push(req);
        }),
      );
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([Promise.all(firsts), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no snapshot within ${timeoutMs} ms`)), timeoutMs)))]);
    } finally {
      clearTimeout(timer);
    }
  }

  snapshotCounts(): number[] {
    return [...this.events];
  }

  close(): void {
    for (const r of this.reqs) r.destroy();
    this.reqs.length = 0;
  }
}
