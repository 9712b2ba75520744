import type { Command } from 'commander';
import type { Config, StageName } from '../../shared/config.js';
import type { DlqService } from '../../queues/dlq-service.js';
import { dlqServiceFor } from '../../pipeline/replay.js';
import { parseStage, positiveIntOption, UsageError } from '../args.js';
import { out, withTools, type ToolContext } from '../tool-context.js';

function stageOf(config: Config, value: string | undefined): StageName | undefined {
  return value === undefined ? undefined : parseStage(value, config.AMQP_PREFIX);
}

async function withDlq<T>(config: Config, fn: (dlq: DlqService, t: ToolContext) => Promise<T>): Promise<T> {
  return withTools(config, async (t) => {
    const dlq = dlqServiceFor(t.res, t.photos.stages);
    await t.res.broker.waitReady();
    return fn(dlq, t);
  });
}

/** `photopipe dlq list|show|replay|purge`: the dead-letter tools. */
export function registerDlqCommand(program: Command, config: () => Config): void {
  // Created with program.command() so that it inherits the program's settings (exit override, output).
  const dlq = program.command('dlq').description('dead letters: inspect, replay, purge');
  dlq
    .command('list')
    .description('counts per stage and entries (id, photoId, reason, attempts, times) as JSON')
    .option('--stage <S>', 'one stage (role or queue name)')
    .option('--limit <N>', 'entries at most (default 50)', positiveIntOption('--limit'))
    .action(async (o: { stage?: string; limit?: number }) => {
      const c = config();
      const stage = stageOf(c, o.stage);
      await withDlq(c, async (d) => out({ counts: await d.counts(), items: await d.list({ stage, limit: o.limit ?? 50 }) }));
    });
  dlq
    .command('show')
    .description('one dead letter with its headers and body')
    .argument('<ID>', 'dead letter id')
    .action(async (id: string) => {
      await withDlq(config(), async (d) => {
        const entry = await d.show(id);
        if (!entry) throw new UsageError(`no dead letter with id ${id}`);
        out(entry);
      });
    });
  dlq
    .command('replay')
    .description("sends dead letters back to their stage (fresh attempts); the photo is reopened first")
    .option('--stage <S>', 'every letter of this stage')
    .argument('[ID...]', 'these letters')
    .action(async (ids: string[], o: { stage?: string }) => {
      const c = config();
      const stage = stageOf(c, o.stage);
      if (!stage && ids.length === 0) throw new UsageError('dlq replay --stage S | dlq replay ID...');
      await withDlq(c, async (d) => out(await d.replay({ stage, ids })));
    });
  dlq
    .command('purge')
    .description("deletes a stage's dead letters for good")
    .option('--stage <S>', 'the stage')
    .option('--yes', 'confirm')
    .action(async (o: { stage?: string; yes?: boolean }) => {
      const c = config();
      const stage = stageOf(c, o.stage);
      if (!stage) throw new UsageError('dlq purge --stage S --yes');
      if (!o.yes) throw new UsageError('dlq purge deletes dead letters for good: add --yes');
      await withDlq(c, async (d) => out({ purged: await d.purge(stage) }));
    });
}
