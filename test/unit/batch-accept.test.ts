import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { acceptPhoto, type AcceptDeps } from '../../src/pipeline/accept-photo.js';
import { createLogger } from '../../src/shared/logger.js';
import { PerKeySerial } from '../../src/batches/per-key-serial.js';
import type { PhotoStatus } from '../../src/db/photos/photo-row.js';

const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, ...Buffer.alloc(60)]);

/** acceptPhoto against in-memory fakes of its stores: what it writes, publishes and deletes. */
function fakes() {
  const rows = new Map<string, { tenantId: string; status: PhotoStatus }>();
  const log = { puts: [] as string[], deletes: [] as string[], published: [] as string[] };
  const deps: AcceptDeps = {
    config: { UPLOAD_MAX_BYTES: 1_000_000 },
    log: createLogger({ LOG_LEVEL: 'silent' }, { role: 'test' }, 'stderr'),
    blobs: {
      put: (id: string) => Promise.resolve(void log.puts.push(id)),
      delete: (id: string) => Promise.resolve(void log.deletes.push(id)),
    } as unknown as AcceptDeps['blobs'],
    intake: {
      insertQueued: (p: { id: string; tenantId: string }) => {
        if (rows.has(p.id)) return Promise.resolve(false);
        rows.set(p.id, { tenantId: p.tenantId, status: 'queued' });
        return Promise.resolve(true);
      },
      statusOf: (id: string) => Promise.resolve(rows.get(id) ?? null),
      deleteQueued: () => Promise.resolve(),
    } as unknown as AcceptDeps['intake'],
    broker: { publishToStage: (_s: string, m: { photoId: string }) => Promise.resolve(void log.published.push(m.photoId)) } as unknown as AcceptDeps['broker'],
  };
  return { deps, rows, log };
}

describe('acceptPhoto with a chosen id (batch downloads)', () => {
  const id = '3b0f8a0e-2d5c-4a59-9f7a-0f5f3a1c9e11';

  it('accepts the same id again as the same photo: no second row, its message published again while queued, nothing deleted', async () => {
    const { deps, rows, log } = fakes();
    const first = await acceptPhoto(deps, { tenantId: 't', bytes: JPEG, filename: null, id, profile: 'batch', output: { format: 'jpeg', maxSize: 512, quality: 80 }, lane: 'bulk' });
    assert.equal(first.id, id);
    const again = await acceptPhoto(deps, { tenantId: 't', bytes: JPEG, filename: null, id, profile: 'batch', lane: 'bulk' });
    assert.equal(again.id, id);
    assert.equal(rows.size, 1);
    assert.deepEqual(log.published, [id, id], 'a repeat may follow a crash between the insert and the publish');
    assert.deepEqual(log.puts, [id], 'the bytes are not stored twice');
    assert.deepEqual(log.deletes, []);
    rows.get(id)!.status = 'processing';
    await acceptPhoto(deps, { tenantId: 't', bytes: JPEG, filename: null, id });
    assert.equal(log.published.length, 2, 'past queued, nothing is published again');
  });

  it('refuses a chosen id that is another tenant\'s photo', async () => {
    const { deps } = fakes();
    await acceptPhoto(deps, { tenantId: 'a', bytes: JPEG, filename: null, id });
    await assert.rejects(acceptPhoto(deps, { tenantId: 'b', bytes: JPEG, filename: null, id }), /another tenant/);
  });
});

describe('PerKeySerial', () => {
  it('runs one pass per key at a time and coalesces requests made during a pass into one more pass', async () => {
    const serial = new PerKeySerial();
    let running = 0;
    let maxRunning = 0;
    let passes = 0;
    const work = async () => {
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      passes += 1;
      await new Promise((r) => setTimeout(r, 20));
      running -= 1;
    };
    await Promise.all([serial.run('a', work), serial.run('a', work), serial.run('a', work), serial.run('a', work)]);
    assert.equal(maxRunning, 1);
    assert.equal(passes, 2, 'the first pass, then one more for the three that came during it');
    passes = 0;
    await Promise.all([serial.run('a', work), serial.run('b', work)]);
    assert.equal(passes, 2, 'keys do not wait for each other');
  });
});
