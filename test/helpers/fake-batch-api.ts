import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';

export interface FakeJob {
  id: string;
  customer: string;
  idempotencyKey: string;
  batchId: string;
  sequence: number;
  urls: string[];
  createdAt: number;
  doneAt: number;
  status: 'running' | 'succeeded' | 'failed';
  callbackUrl?: string;
  callbackToken?: string;
  /** Times the same start (same Idempotency-Key) arrived. */
  starts: number;
}

/**
 * A customer's batch API as a real HTTP server on 127.0.0.1, implementing the contract photopipe
 * expects (README "Batch ingestion"): POST /jobs starts a job (the same Idempotency-Key answers the
 * same job), GET /jobs/<id> reports it, and in webhook mode it POSTs the outcome to the callback URL
 * with the call's token. A job takes baseMs + perUrlMs per URL. Customers are told apart by their
 * Authorization header. It records every URL handed over and every overlap: a job started for a
 * customer while another of its jobs is still running is a violation.
 */
export class FakeBatchApi {
  private server: Server | null = null;
  readonly jobs: FakeJob[] = [];
  readonly violations: string[] = [];
  private readonly byKey = new Map<string, FakeJob>();
  /** Start requests to answer 503 before accepting (per customer), to exercise retries. */
  failStarts = new Map<string, number>();
  callbackFailures: string[] = [];
  /** Delay before answering a start (the job is recorded at once): a caller that pauses mid-call. */
  startAnswerDelayMs = 0;
  url = '';

  constructor(private readonly opts: { baseMs: number; perUrlMs: number }) {}

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/jobs`;
    return this;
  }

  jobsOf(customer: string): FakeJob[] {
    return this.jobs.filter((j) => j.customer === customer);
  }

  /** Every URL handed to a customer, one entry per URL per job. */
  handed(customer: string): string[] {
    return this.jobsOf(customer).flatMap((j) => j.urls);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const customer = req.headers.authorization ?? 'anonymous';
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'POST' && path === '/jobs') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { batchId: string; sequence: number; urls: string[]; callbackUrl?: string; callbackToken?: string };
      const key = String(req.headers['idempotency-key'] ?? '');
      const seen = this.byKey.get(`${customer}|${key}`);
      if (seen) {
        seen.starts += 1;
        if (JSON.stringify(seen.urls) !== JSON.stringify(body.urls)) this.violations.push(`${customer}: key ${key} re-sent with other URLs`);
        await new Promise((r) => setTimeout(r, this.startAnswerDelayMs));
        return json(res, 200, { jobId: seen.id });
      }
      const failLeft = this.failStarts.get(customer) ?? 0;
      if (failLeft > 0) {
        this.failStarts.set(customer, failLeft - 1);
        return json(res, 503, { error: 'busy' });
      }
      const now = Date.now();
      const running = this.jobsOf(customer).filter((j) => j.status === 'running');
      for (const r of running) this.violations.push(`${customer}: job ${body.batchId}.${body.sequence} started while ${r.batchId}.${r.sequence} was running`);
      const job: FakeJob = {
        id: randomUUID(),
        customer,
        idempotencyKey: key,
        batchId: body.batchId,
        sequence: body.sequence,
        urls: body.urls,
        createdAt: now,
        doneAt: now + this.opts.baseMs + this.opts.perUrlMs * body.urls.length,
        status: 'running',
        callbackUrl: body.callbackUrl,
        callbackToken: body.callbackToken,
        starts: 1,
      };
      this.jobs.push(job);
      this.byKey.set(`${customer}|${key}`, job);
      setTimeout(() => void this.finish(job), job.doneAt - now);
      await new Promise((r) => setTimeout(r, this.startAnswerDelayMs));
      return json(res, 202, { jobId: job.id });
    }
    const m = /^\/jobs\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && m) {
      const job = this.jobs.find((j) => j.id === decodeURIComponent(m[1]!) && j.customer === customer);
      if (!job) return json(res, 404, { error: 'no such job' });
      return json(res, 200, { status: job.status });
    }
    json(res, 404, { error: 'no route' });
  }

  private async finish(job: FakeJob): Promise<void> {
    job.status = 'succeeded';
    if (!job.callbackUrl) return;
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        const r = await fetch(job.callbackUrl, {
          method: 'POST',
          headers: { authorization: `Bearer ${job.callbackToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ status: 'succeeded', jobId: job.id }),
        });
        if (r.status === 204) return;
        this.callbackFailures.push(`${job.id}: ${r.status}`);
      } catch (err) {
        this.callbackFailures.push(`${job.id}: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}
