import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ApiKeyRepo } from '../src/db/api-key-repo.js';
import { Stack } from './helpers/stack.js';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '..', 'bin', 'photopipe.js');

/** The `photopipe` command as operators use it: what it prints, what it stores, how it fails. */
describe('photopipe CLI', () => {
  let stack: Stack;

  before(async () => {
    stack = await Stack.start({ workers: 'none', api: false });
  });

  after(async () => {
    await stack?.stop();
  });

  async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env: { ...process.env, ...stack.env, ...env }, timeout: 60_000 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  it('keys create prints only the new key, stores its hash, and keys revoke disables it', async () => {
    const tenant = `cli_${Date.now().toString(36)}`;
    const created = await cli(['keys', 'create', '--tenant', tenant]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^pp_[A-Za-z0-9_-]{43}\n$/, 'one line: the key and nothing else');
    const key = created.stdout.trim();
    const repo = new ApiKeyRepo(stack.db);
    assert.equal(await repo.tenantFor(key), tenant);
    const { rows } = await stack.db.query(`SELECT encode(key_hash, 'hex') AS h FROM api_keys WHERE tenant_id = $1`, [tenant]);
    assert.equal(rows.length, 1);
    assert.ok(!JSON.stringify(rows).includes(key.slice(3)), 'the key itself is not stored');

    const listed = await cli(['keys', 'list', '--tenant', tenant]);
    assert.equal(listed.code, 0);
    const keys = JSON.parse(listed.stdout) as { id: string; tenantId: string; prefix: string; revokedAt: string | null }[];
    assert.equal(keys.length, 1);
    assert.equal(keys[0]!.prefix, key.slice(0, 9));
    assert.ok(!listed.stdout.includes(key), 'listing never shows a key');

    assert.deepEqual(await cli(['keys', 'revoke', keys[0]!.id]), { code: 0, stdout: 'revoked\n', stderr: '' });
    assert.equal(await repo.tenantFor(key), null);
  });

  it('refuses a bad tenant name with exit code 2', async () => {
    for (const bad of [[], ['--tenant', ''], ['--tenant', '../etc'], ['--tenant', 'x'.repeat(64)]]) {
      const res = await cli(['keys', 'create', ...bad]);
      assert.equal(res.code, 2, `keys create ${bad.join(' ')}`);
      assert.match(res.stderr, /--tenant NAME/);
      assert.equal(res.stdout, '');
    }
  });

  it('stops at start-up with exit code 2 and a message naming the variable when a setting is invalid', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ PORT: 'eighty' }, /PORT/],
      [{ STAGE_PREFETCH: 'frame=2,resize=4' }, /STAGE_PREFETCH: bad entry "resize=4"/],
      [{ QUEUE_TYPE: 'stream' }, /QUEUE_TYPE/],
      [{ ADMIN_API_KEY: 'short' }, /ADMIN_API_KEY/],
      [{ RETRY_DELAYS_MS: '1000,-5' }, /RETRY_DELAYS_MS/],
    ];
    for (const [env, expected] of cases) {
      const res = await cli(['api'], env);
      assert.equal(res.code, 2, `${JSON.stringify(env)}: exit ${res.code}`);
      assert.match(res.stderr, /invalid configuration/);
      assert.match(res.stderr, expected);
    }
  });
});
