import { writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { STAGES, loadConfig, type Config } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { installShutdown, Releasers } from '../shared/lifecycle.js';
import { Broker } from '../queues/broker.js';
import { buildTopology, toDefinitions } from '../queues/topology.js';
import { PIPELINE } from '../pipeline/photo-pipeline.js';
import { WORKER_ROLES } from '../workers/roles.js';
import { SERVICE_ROLES } from '../workers/service-roles.js';
import { parseRoles, positiveIntOption } from './args.js';
import { registerKeysCommand } from './commands/keys-command.js';
import { registerDlqCommand } from './commands/dlq-command.js';
import { registerPlacesCommand } from './commands/places-command.js';
import { registerStageCommand } from './commands/stage-command.js';
import { registerClientCommands } from './commands/client-commands.js';
import { out, withTools } from './tool-context.js';

// Each process loads only what its command runs: a stage worker does not carry the API, the local
// S3 server or the supervisor (tens of MB of RSS per process in a fleet of one process per role).
const runners = {
  api: async () => (await import('../api/run-api.js')).runApi,
  workers: async () => (await import('../workers/run-workers.js')).runWorkers,
  reconciler: async () => await import('../reconciler/run-reconciler.js'),
  reconcileOnce: async () => (await import('../reconciler/reconciler.js')).reconcileOnce,
  supervise: async () => await import('./supervise-command.js'),
  localS3: async () => (await import('../local-s3/run-local-s3.js')).startLocalS3,
  migrate: async () => (await import('../db/migrate.js')).migrate,
};

const ROLE_HELP = `role names or queue names, comma-separated (${WORKER_ROLES.join(', ')})`;

/** The roles with their queues and what each does, from the pipeline's declaration. */
function rolesTable(config: Config): string {
  const t = buildTopology(config);
  const rows = STAGES.map((s) => `  ${s.padEnd(10)} ${t.workQueue(s).padEnd(24)} ${PIPELINE.spec[s].description} (bulk lane: ${t.workQueue(s, 'bulk')})`);
  for (const r of SERVICE_ROLES) rows.push(`  ${r.name.padEnd(10)} ${r.queues.map((q) => t.serviceQueue(q)).join(', ')}: ${r.description}`);
  return `\n  role       queue                    work\n${rows.join('\n')}\n`;
}

/**
 * Every `photopipe` command, defined once: parsing, --help on every command and usage errors come
 * from this definition. Configuration is read (and validated) only by commands that need it.
 */
export function buildProgram(): Command {
  let config: Config | undefined;
  const cfg = (): Config => (config ??= loadConfig());

  const program = new Command('photopipe')
    .description('photo-processing pipeline: upload API, workers, reconciler and operator tools.\nConfiguration comes from environment variables (see .env.example).')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program
    .command('start')
    .description('migrations, topology, API + all workers + reconciler (supervised); a local S3 server too when S3_ENDPOINT is unset (npm start)')
    .action(async () => (await runners.supervise()).startCommand());

  program
    .command('api')
    .description('the upload/status API only')
    .action(async () => (await runners.api())(cfg()));

  program
    .command('worker')
    .description('worker consumers for the given roles in this process (one role per container)')
    .requiredOption('--role <roles>', ROLE_HELP)
    .option('--concurrency <N>', 'in-flight messages per role in this process (the consumer prefetch)', positiveIntOption('--concurrency'))
    .action(async (o: { role: string; concurrency?: number }) => (await runners.workers())(cfg(), parseRoles(o.role, cfg().AMQP_PREFIX), { prefetch: o.concurrency }));

  program
    .command('workers')
    .description('supervised worker processes for the chosen roles (default: all)')
    .option('--role <roles>', ROLE_HELP)
    .addOption(new Option('--queues <roles>', 'same as --role (older name)').hideHelp())
    .option('--concurrency <N>', 'in-flight messages per process (the consumer prefetch)', positiveIntOption('--concurrency'))
    .option('--processes <N>', 'processes per role', positiveIntOption('--processes'))
    .addHelpText('after', () => rolesTable(cfg()))
    .action(async (o: { role?: string; queues?: string; concurrency?: number; processes?: number }) =>
      (await runners.supervise()).workersCommand(parseRoles(o.role ?? o.queues, cfg().AMQP_PREFIX), { concurrency: o.concurrency, processes: o.processes }),
    );

  program
    .command('reconciler')
    .description('periodic stuck-work reconciler (one pass at a time across the fleet)')
    .action(async () => (await runners.reconciler()).runReconciler(cfg()));

  program
    .command('reconcile')
    .description('one reconciler pass now; prints its report (JSON)')
    .option('--dry-run', 'only list what would be republished')
    .option('--stale-ms <N>', 'threshold for this pass (default RECONCILE_STALE_MS)', positiveIntOption('--stale-ms'))
    .action(async (o: { dryRun?: boolean; staleMs?: number }) => {
      const c = cfg();
      const reconcileOnce = await runners.reconcileOnce();
      const report = await withTools(c, async (t) => {
        const { broker, blobs } = t.res;
        await broker.waitReady();
        return reconcileOnce({ stale: t.photos.stale, stages: t.photos.stages, broker, blobs, log: t.log }, { staleMs: o.staleMs ?? c.RECONCILE_STALE_MS, dryRun: o.dryRun ?? false });
      });
      out(report);
    });

  program
    .command('migrate')
    .description('apply database migrations (creates the database if missing)')
    .action(async () => {
      const c = cfg();
      const migrate = await runners.migrate();
      const applied = await migrate(c.DATABASE_URL, createLogger(c, { role: 'migrate' }, 'stderr'));
      out(applied.length > 0 ? `applied: ${applied.join(', ')}` : 'database is up to date');
    });

  program
    .command('topology')
    .description('declare exchanges and queues; --write exports them as RabbitMQ definitions')
    .option('--write <FILE>', 'write the definitions JSON instead of declaring')
    .action(async (o: { write?: string }) => {
      const c = cfg();
      const topology = buildTopology(c);
      if (o.write) {
        writeFileSync(o.write, `${JSON.stringify(toDefinitions(topology), null, 2)}\n`);
        return out(`wrote ${o.write}`);
      }
      const broker = new Broker(c, topology, createLogger(c, { role: 'cli' }, 'stderr'), 'photopipe-cli');
      try {
        await broker.waitReady();
      } finally {
        await broker.close();
      }
      out('topology declared');
    });

  registerKeysCommand(program, cfg);
  registerDlqCommand(program, cfg);
  registerPlacesCommand(program, cfg);
  registerStageCommand(program, cfg);
  registerClientCommands(program, (code) => {
    process.exitCode = code;
  });

  program
    .command('local-s3')
    .description('the local S3-compatible server alone (development)')
    .action(async () => {
      const c = cfg();
      const log = createLogger(c, { role: 'local-s3' });
      const startLocalS3 = await runners.localS3();
      const s3 = await startLocalS3({ port: c.LOCAL_S3_PORT, directory: c.LOCAL_S3_DIR, bucket: c.S3_BUCKET, log });
      const releasers = new Releasers(log);
      releasers.add('server', () => s3.close());
      installShutdown(log, releasers);
    });

  return program;
}
