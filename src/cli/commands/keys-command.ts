import type { Command } from 'commander';
import type { Config } from '../../shared/config.js';
import { UsageError } from '../args.js';
import { out, withTools } from '../tool-context.js';

const TENANT = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$/;

/** `photopipe keys create|list|revoke`: tenants' API keys (shown once, stored hashed). */
export function registerKeysCommand(program: Command, config: () => Config): void {
  // Created with program.command() so that it inherits the program's settings (exit override, output).
  const keys = program.command('keys').description("tenants' API keys (shown once at creation, stored hashed)");
  keys
    .command('create')
    .description('prints a new API key for a tenant (only the key, on one line)')
    .option('--tenant <NAME>', 'tenant name: letters, digits, _ and -, at most 63 characters')
    .action(async (o: { tenant?: string }) => {
      if (!o.tenant || !TENANT.test(o.tenant)) throw new UsageError('keys create needs --tenant NAME (letters, digits, _ and -, at most 63 characters)');
      const tenant = o.tenant;
      await withTools(config(), async (t) => out((await t.keys.create(tenant)).key));
    });
  keys
    .command('list')
    .description('keys (id, tenant, prefix, dates; never the key) as JSON')
    .option('--tenant <NAME>', 'only this tenant')
    .action(async (o: { tenant?: string }) => withTools(config(), async (t) => out(await t.keys.list(o.tenant))));
  keys
    .command('revoke')
    .description('revokes a key by its id')
    .argument('<ID>', 'key id (from keys list)')
    .action(async (id: string) => withTools(config(), async (t) => out((await t.keys.revoke(id)) ? 'revoked' : 'no such active key')));
}
