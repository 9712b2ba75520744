import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Stack } from './helpers/stack.js';
import { newTenant } from './helpers/fault-check.js';
import { FakeBatchApi } from './helpers/fake-batch-api.js';
import { createLogger } from '../src/shared/logger.js';
import { ProcessResources } from '../src/shared/process-resources.js';
import { BatchRepo } from '../src/db/batches/batch-repo.js';
import { photoRepos } from '../src/db/photos/index.js';
import { TenantLoad } from '../src/pipeline/tenant-load.js';
import { Dispatcher } from '../src/batches/dispatcher.js';
import { DispatchKicker } from '../src/batches/dispatch-kicker.js';
import { BatchApiClient } from '../src/batches/batch-api-client.js';
import { fetchSetup } from '../src/batches/fetch-policy.js';

/**
 * Never two calls in flight per customer, where it is decided: in Postgres. Two dispatchers on
 * the same customer at once (what a paused process that wakes up after a failover amounts to):
 * a second open call is refused by the unique index, a takeover's fence makes the old holder's
 * writes no-ops, and a start re-sent by the new holder names the same job (Idempotency-Key).
 */
describe('batch dispatch: one call in flight per customer', () => {
  let stack: Stack;
  let res: ProcessResources;
  let repo: BatchRepo;
  let api: FakeBatchApi;

  before(async () => {
    stack = await Stack.start({ api: false, workers: 'none', env: { FETCH_ALLOW_LOOPBACK: 'true', BATCH_POLL_INTERVAL_MS: '100' } });
    res = new ProcessResources(stack.config, createLogger({ LOG_LEVEL: 'warn' }, { role: 'test' }, 'stderr'), 'fencing-test');
    await res.broker.waitReady();
    repo = new BatchRepo(res.db);
    api = await new FakeBatchApi({ baseMs: 300, perUrlMs: 1 }).start();
  });

  after(async () => {
    await api?.close();
    await res?.release();
    await stack?.stop();
  });

  /** A batch of `ready` items whose images are already stored (ready to hand over). */
  async function readyBatch(tenantId: string, ready: number, extra: Partial<{ min: number }> = {}): Promise<string> {
    const id = randomUUID();
    await stack.db.query(
      `INSERT INTO batches (id, tenant_id, status, source, output, min_batch_size, max_batch_size, api_endpoint, api_mode, api_auth_name, api_auth_value, total)
       VALUES ($1, $2, 'running', 'urls', '{"format":"jpeg","maxSize":512,"quality":80}', $3, 1000, $4, 'poll', 'Authorization', $5, $6)`,
      [id, tenantId, extra.min ?? 1, api.url, `Bearer ${tenantId}`, ready],
    );
    await stack.db.query(
      `INSERT INTO batch_items (batch_id, seq, url, status, output_url, ready_at) SELECT $1::uuid, s, 'http://x.test/' || s, 'ready', 'http://s3.test/' || $1::text || '/' || s, now() FROM generate_series(1, $2) s`,
      [id, ready],
    );
    return id;
  }

  const dispatcher = () =>
    new Dispatcher({
      config: stack.config,
      repo,
      broker: res.broker,
      api: new BatchApiClient(fetchSetup(stack.config), 5_000),
      kicker: new DispatchKicker(res.broker, createLogger({ LOG_LEVEL: 'silent' }, { role: 'test' }, 'stderr')),
      tenantLoad: new TenantLoad(stack.config, res.redis, photoRepos(res.db).intake),
      log: createLogger({ LOG_LEVEL: 'warn' }, { role: 'dispatcher' }, 'stderr'),
    });

  it('refuses a second open call for a customer, across its batches, and lets other customers in', async () => {
    const a = (await newTenant(stack, 'fa')).tenant;
    const b = (await newTenant(stack, 'fb')).tenant;
    const a1 = await readyBatch(a, 5);
    const a2 = await readyBatch(a, 5);
    const b1 = await readyBatch(b, 5);
    const ids = { idempotencyKey: (s: number) => `k${s}`, callbackToken: null };
    const first = await repo.openNewCall(a, a1, 10, ids);
    assert.ok(first);
    assert.equal(await repo.openNewCall(a, a2, 10, ids), null, 'the customer has a call open');
    assert.equal(await repo.openNewCall(a, a1, 10, ids), null);
    assert.ok(await repo.openNewCall(b, b1, 10, ids), 'another customer proceeds');
    const { rows } = await stack.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM batch_items WHERE batch_id = $1 AND status = 'ready'`, [a2]);
    assert.equal(rows[0]!.n, 5, 'nothing of the refused call was handed');
  });

  it('makes a paused holder\'s writes no-ops once another dispatcher took the call over', async () => {
    const t = (await newTenant(stack, 'fc')).tenant;
    const id = await readyBatch(t, 3);
    const call = (await repo.openNewCall(t, id, 10, { idempotencyKey: (s) => `${id}.${s}`, callbackToken: null }))!;
    const old = (await repo.claim(call.batchId, call.seq))!;
    const taken = (await repo.claim(call.batchId, call.seq))!;
    assert.equal(taken.fence, old.fence + 1);
    assert.equal(await repo.markRunning(old, 'job-old', null), false, 'the old fence writes nothing');
    assert.equal(await repo.giveUp(old, 'abandoned', { code: 'x', reason: 'y' }), false, 'nor can it give the call up');
    assert.equal(await repo.markRunning(taken, 'job-new', null), true);
    assert.equal((await repo.call(call.batchId, call.seq))!.jobId, 'job-new');
  });

  it('two dispatchers on one customer at once (one of them stalled mid-start): one job at the customer, no overlap, the same key re-sent', async () => {
    const t = (await newTenant(stack, 'fd')).tenant;
    const id = await readyBatch(t, 50);
    api.startAnswerDelayMs = 1_000;
    const slow = dispatcher().tick(t); // opens the call and waits for the customer's answer
    await new Promise((r) => setTimeout(r, 300));
    await dispatcher().tick(t); // takes the call over (fence), re-sends the same start
    await slow;
    api.startAnswerDelayMs = 0;
    const jobs = api.jobsOf(`Bearer ${t}`);
    assert.equal(jobs.length, 1, 'one job');
    assert.ok(jobs[0]!.starts >= 2, 'the start was sent again, with the same Idempotency-Key');
    const call = (await repo.call(id, 1))!;
    assert.equal(call.jobId, jobs[0]!.id);
    assert.equal(call.status, 'running');
    // Both finish it: polled until the job is over, then the batch completes.
    const d = dispatcher();
    for (let i = 0; i < 40 && (await repo.openCall(t)); i++) {
      await new Promise((r) => setTimeout(r, 150));
      await d.tick(t);
    }
    await d.tick(t);
    const { rows } = await stack.db.query<{ status: string }>(`SELECT status FROM batches WHERE id = $1`, [id]);
    assert.equal(rows[0]!.status, 'complete');
    assert.deepEqual(api.violations, []);
    assert.equal(api.handed(`Bearer ${t}`).length, 50);
  });
});
