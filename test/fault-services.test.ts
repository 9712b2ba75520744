import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { STAGES } from '../src/shared/config.js';
import { sleep, Stack, waitFor } from './helpers/stack.js';
import { assertProper503, checkOutcomes, newTenant, sh, UploadStream, workerProc } from './helpers/fault-check.js';

/**
 * Fault suite, part B (shared services): RabbitMQ, Redis and Postgres restarted while uploads
 * stream in and photos are processed. These restarts hit everyone on the machine: `npm test` runs
 * the test files one at a time (--test-concurrency=1), so nothing else of ours runs meanwhile.
 * Every restart is undone in a `finally` (commands from /work/shared/services.md).
 *
 * For each outage: uploads get 503 + Retry-After + our JSON error body (never 500, never 202 for
 * something not stored); /readyz says which dependency is away; the API accepts again within a
 * bounded time without being restarted;
 * the workers' consumers come back by themselves; every 202 ends final with its rows and objects.
 */

const PG_VERSION = readdirSync('/etc/postgresql').sort().pop() ?? '15';
const RECONNECT_MS = 30_000;
const GRACE_MS = 10_000; // the harness's SHUTDOWN_GRACE_MS

const services = {
  rabbitmq: {
    stop: () => sh('rabbitmqctl', ['stop_app']),
    async start() {
      try {
        await sh('rabbitmqctl', ['start_app']);
      } catch {
        await sh('rabbitmq-server', ['-detached']); // the node itself is down: start it
      }
      await sh('rabbitmqctl', ['await_startup'], 120_000);
    },
  },
  redis: {
    stop: () => sh('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'shutdown', 'nosave']).catch(() => ''),
    /**
     * A restart of a Redis that keeps its data (production runs it with AOF): this machine's Redis
     * has persistence off, so the snapshot is forced at shutdown. The snapshot file is removed once
     * Redis has loaded it, so that later restarts by others start empty, as they expect.
     */
    stopKeepingData: () => sh('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'shutdown', 'save']).catch(() => ''),
    async start() {
      const up = async () => (await sh('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'ping']).catch(() => '')).trim() === 'PONG';
      if (!(await up())) {
        await sh('redis-server', [
          '--daemonize', 'yes', '--bind', '127.0.0.1', '-::1', '--port', '6379', '--save', '', '--appendonly', 'no',
          '--dir', '/var/lib/redis', '--logfile', '/var/log/redis/ci.log',
        ]);
      }
      await waitFor('redis to answer PING', up, 30_000, 100);
    },
  },
  postgres: {
    stop: () => sh('pg_ctlcluster', ['--skip-systemctl-redirect', PG_VERSION, 'main', 'stop', '-m', 'fast']),
    async start() {
      const up = async () => (await sh('pg_isready', ['-h', '127.0.0.1', '-p', '5432']).then(() => true, () => false));
      if (!(await up())) await sh('pg_ctlcluster', ['--skip-systemctl-redirect', PG_VERSION, 'main', 'start']);
      await waitFor('postgres to accept connections', up, 60_000, 200);
    },
  },
};

interface CaseInfo {
  tenant: string;
  key: string;
  /** Photo ids accepted so far. */
  ids: string[];
}

describe('fault suite: RabbitMQ, Redis and Postgres restarts', () => {
  let stack: Stack;

  const ADMIN_KEY = 'fault-suite-admin-key-0123456789';

  before(async () => {
    // The harness's retry delays are short (200..3200 ms): 8 attempts give a stage about 13 s of
    // backoff, more than a restart here takes, as production's delays (1 s .. 10 min) do.
    stack = await Stack.start({ workers: 'each', env: { MAX_ATTEMPTS: '8', ADMIN_API_KEY: ADMIN_KEY } });
  });

  /** While a dependency is away, /readyz answers 503 and names it (without the error text: it is anonymous). */
  async function assertNotReady(check: 'rabbitmq' | 'redis' | 'postgres'): Promise<void> {
    const res = await fetch(`${stack.apiUrl}/readyz`, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { status: string; checks: Record<string, string> };
    assert.equal(res.status, 503, `/readyz while ${check} is down: ${JSON.stringify(body)}`);
    assert.equal(body.status, 'not_ready');
    assert.equal(body.checks[check], 'fail', `${check} check: ${JSON.stringify(body.checks)}`);
  }

  after(async () => {
    // Whatever happened above, leave every service running for the next user.
    for (const s of Object.values(services)) await s.start().catch((err) => console.error('could not restart a service:', err));
    await stack?.stop();
  });

  /**
   * Streams paced uploads, takes one service away for a few seconds once processing is under way,
   * brings it back, and checks the answers the API gave around it. Returns the stream and when the
   * service was back.
   */
  async function outage(
    label: string,
    service: { stop: () => Promise<unknown>; start: () => Promise<void> },
    check: 'rabbitmq' | 'redis' | 'postgres',
    hooks: { beforeDown?: (c: CaseInfo) => Promise<void>; whileDown?: (c: CaseInfo) => Promise<void> } = {},
  ): Promise<{ tenant: string; stream: UploadStream; downAt: number; upAt: number }> {
    const { tenant, key } = await newTenant(stack, label);
    const stream = new UploadStream(stack, key, { max: 400, concurrency: 3, salt: `${label}-${Date.now()}`, gapMs: 150 }).start();
    let downAt = 0;
    let upAt = 0;
    try {
      await stream.waitAccepted(20);
      await hooks.beforeDown?.({ tenant, key, ids: stream.accepted });
      downAt = Date.now();
      await service.stop();
      // While it is down, uploads are refused; a few seconds of outage, then bring it back.
      await waitFor(`uploads refused while ${label} is down`, async () => stream.results.filter((r) => r.at > downAt && r.status === 503).length >= 3, 30_000, 50);
      await assertNotReady(check);
      await hooks.whileDown?.({ tenant, key, ids: stream.accepted });
      await sleep(2_000);
    } finally {
      await service.start();
      upAt = Date.now();
    }
    // Reconnect without a restart: the same API process accepts uploads again, and soon.
    const before = stream.accepted.length;
    await waitFor(`the API to accept uploads again after ${label} came back`, async () => stream.results.some((r) => r.at > upAt && r.status === 202), RECONNECT_MS, 50);
    await stream.waitAccepted(before + 10, RECONNECT_MS);
    await stream.stop();
    assert.equal(stack.api?.running, true, 'the API was not restarted');

    const bad = stream.results.filter((r) => r.status !== 202 && r.status !== 503);
    assert.deepEqual(bad, [], `only 202 and 503 answers (${JSON.stringify(stream.statusCounts())})`);
    for (const r of stream.results.filter((x) => x.status === 503)) assertProper503(r);
    return { tenant, stream, downAt, upAt };
  }

  it('RabbitMQ restart: 503 while down, 202 again after, consumers come back, every 202 completes', async (t) => {
    const stoppedWhileDown: { exit?: { code: number | null; signal: string | null }; tookMs?: number } = {};
    const adminDuringOutage: { status?: number; code?: string; retryAfter?: string | null } = {};
    const { tenant, stream } = await outage('rabbit', services.rabbitmq, 'rabbitmq', {
      // A worker told to stop while the broker is away must still exit 0 within its grace period
      // (its unacked messages go back to the queue when the broker notices the closed connection).
      whileDown: async () => {
        // The dead-letter tools need the broker too: 503, not 500, and without hanging.
        const res = await fetch(`${stack.apiUrl}/v1/admin/dlq`, { headers: { authorization: `Bearer ${ADMIN_KEY}` }, signal: AbortSignal.timeout(15_000) });
        Object.assign(adminDuringOutage, { status: res.status, code: ((await res.json()) as { error?: { code?: string } }).error?.code, retryAfter: res.headers.get('retry-after') });
        const frame = workerProc(stack, 'frame');
        const started = Date.now();
        frame.kill('SIGTERM');
        const exit = await frame.exited;
        stoppedWhileDown.exit = exit;
        stoppedWhileDown.tookMs = Date.now() - started;
      },
    });
    assert.deepEqual(stoppedWhileDown.exit, { code: 0, signal: null });
    assert.equal(adminDuringOutage.status, 503, JSON.stringify(adminDuringOutage));
    assert.equal(adminDuringOutage.code, 'service_unavailable');
    assert.match(adminDuringOutage.retryAfter ?? '', /^\d+$/);
    assert.ok((stoppedWhileDown.tookMs ?? Infinity) < GRACE_MS + 5_000, `frame worker exited after ${stoppedWhileDown.tookMs} ms`);
    await stack.startWorkers(['frame']);

    // Every other worker's consumer came back by itself (amqp-connection-manager re-runs the setup).
    await stack.waitForConsumers([...STAGES], 1, RECONNECT_MS);
    for (const s of STAGES) assert.ok((await stack.queueStats(stack.queue(s))).consumerCount >= 1, `${s} has a consumer again`);

    const out = await checkOutcomes(stack, tenant, stream.accepted, { timeoutMs: 120_000 });
    assert.equal(out.complete.length, stream.accepted.length);
    t.diagnostic(`answers: ${JSON.stringify(stream.statusCounts())}; stage re-runs: ${out.stageReruns}`);
  });

  it('Redis restart: 503 while down; photos whose bytes were lost end failed (blob missing), the rest complete', async (t) => {
    let inFlight = 0;
    const { tenant, stream, upAt } = await outage('redis', services.redis, 'redis', {
      // Photos whose renditions are still to be made need their bytes: the restart loses them.
      beforeDown: async ({ tenant }) => {
        await waitFor(
          'photos waiting for their renditions',
          async () => {
            const { rows } = await stack.db.query(
              `SELECT count(*)::int AS n FROM photos WHERE tenant_id = $1 AND status IN ('queued', 'processing')
                 AND COALESCE(stages->>'frame', 'pending') = 'pending'`,
              [tenant],
            );
            inFlight = rows[0].n;
            return inFlight >= 5;
          },
          30_000,
          20,
        );
      },
    });
    const out = await checkOutcomes(stack, tenant, stream.accepted, { timeoutMs: 120_000, failedReason: /no longer in Redis/ });
    for (const [id, f] of out.failed) assert.equal(f.code, 'blob_missing', `photo ${id}: ${JSON.stringify(f)}`);
    assert.ok(out.failed.size >= 1, `the restart hit photos in flight (${inFlight} were waiting for renditions)`);
    // Uploads accepted after Redis came back have their bytes: all of them complete.
    const late = stream.results.filter((r) => r.status === 202 && r.at > upAt).map((r) => r.id!);
    assert.ok(late.length >= 10);
    for (const id of late) assert.ok(out.complete.includes(id), `photo ${id}, uploaded after the restart, completed`);
    t.diagnostic(`answers: ${JSON.stringify(stream.statusCounts())}; complete ${out.complete.length}, failed (blob missing) ${out.failed.size}`);
  });

  it('Redis restart that keeps its data (as with AOF in production): nothing is lost, every 202 completes', async (t) => {
    const { tenant, stream } = await outage(
      'redis_kept',
      {
        stop: services.redis.stopKeepingData,
        async start() {
          await services.redis.start();
          rmSync('/var/lib/redis/dump.rdb', { force: true });
        },
      },
      'redis',
      {
        beforeDown: async ({ tenant }) => {
          await waitFor(
            'photos in flight',
            async () => {
              const { rows } = await stack.db.query(`SELECT count(*)::int AS n FROM photos WHERE tenant_id = $1 AND status IN ('queued', 'processing')`, [tenant]);
              return rows[0].n >= 3;
            },
            30_000,
            20,
          );
        },
      },
    );
    const out = await checkOutcomes(stack, tenant, stream.accepted, { timeoutMs: 120_000 });
    assert.equal(out.complete.length, stream.accepted.length, `failed: ${JSON.stringify([...out.failed])}`);
    t.diagnostic(`answers: ${JSON.stringify(stream.statusCounts())}; stage re-runs: ${out.stageReruns}`);
  });

  it('Postgres restart: 503 while down (uploads and status reads), 202 again after, every 202 completes', async (t) => {
    const reads: { status: number; body: unknown; retryAfter: string | null }[] = [];
    const read = async (key: string, id: string) => {
      const res = await fetch(`${stack.apiUrl}/v1/photos/${id}`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(30_000) });
      reads.push({ status: res.status, body: await res.json(), retryAfter: res.headers.get('retry-after') });
    };
    const { tenant, stream } = await outage('pg', services.postgres, 'postgres', {
      // A status read just before the outage: it works, and leaves the key in the API's auth
      // cache, so the read during the outage gets past authentication and reaches the photo query.
      beforeDown: ({ key, ids }) => read(key, ids[0]!),
      whileDown: ({ key, ids }) => read(key, ids[0]!),
    });
    assert.equal(reads.length, 2);
    assert.equal(reads[0]!.status, 200, `status read before the outage: ${JSON.stringify(reads[0])}`);
    const during = reads[1]!;
    assert.equal(during.status, 503, `status read during the outage: ${JSON.stringify(during)}`);
    assert.equal((during.body as { error?: { code?: string } }).error?.code, 'service_unavailable');
    assert.match(during.retryAfter ?? '', /^\d+$/);

    const out = await checkOutcomes(stack, tenant, stream.accepted, { timeoutMs: 120_000 });
    assert.equal(out.complete.length, stream.accepted.length);
    t.diagnostic(`answers: ${JSON.stringify(stream.statusCounts())}; stage re-runs: ${out.stageReruns}`);
  });
});
