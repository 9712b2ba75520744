import type { Command } from 'commander';
import type { Config, StageName } from '../../shared/config.js';
import { StageControl } from '../../pipeline/stage-control.js';
import { QueueStats } from '../../observability/queue-stats.js';
import { parseStage, positiveIntOption } from '../args.js';
import { EXIT_SOMETHING_FAILED } from './client-commands.js';
import { out, withTools } from '../tool-context.js';
import { redisReady } from '../../shared/redis.js';

/** `photopipe stage list|pause|resume|drain`: a stage's consumers across the whole fleet. */
export function registerStageCommand(program: Command, config: () => Config): void {
  const stage = program.command('stage').description('pause, resume or drain one stage across every worker process');
  const withControl = <T>(fn: (control: StageControl, c: Config) => Promise<T>) =>
    withTools(config(), async (t) => {
      await redisReady(t.res.redis);
      return fn(new StageControl(t.res.redis, t.config.REDIS_KEY_PREFIX), t.config);
    });

  stage
    .command('list')
    .description('each stage: paused or not, messages ready and unacked, consumers')
    .action(async () => {
      await withTools(config(), async (t) => {
        await Promise.all([t.res.broker.waitReady(), redisReady(t.res.redis)]);
        const states = await new StageControl(t.res.redis, t.config.REDIS_KEY_PREFIX).states();
        const queues = await new QueueStats(t.res.broker, { managementUrl: t.config.RABBITMQ_MANAGEMENT_URL, amqpUrl: t.config.AMQP_URL, prefix: t.config.AMQP_PREFIX, log: t.log }).all();
        const topo = t.res.broker.topology;
        out(
          Object.fromEntries(
            Object.entries(states).map(([s, st]) => {
              const lanes = [topo.workQueue(s as StageName), topo.workQueue(s as StageName, 'bulk')].map((n) => queues.find((q) => q.name === n));
              return [s, { ...st, ready: lanes.reduce((n, q) => n + (q?.ready ?? 0), 0), unacked: lanes.some((q) => q?.unacked == null) ? null : lanes.reduce((n, q) => n + (q?.unacked ?? 0), 0), consumers: lanes[0]?.consumers ?? 0 }];
            }),
          ),
        );
      });
    });

  stage
    .command('pause')
    .description('stops every consumer of the stage in every process; its messages wait in the queue (a worker started meanwhile stays paused)')
    .argument('<STAGE>')
    .action(async (name: string) => {
      const s = parseStage(name, config().AMQP_PREFIX);
      await withControl((control) => control.pause(s, `cli:${process.env.USER ?? 'unknown'}`));
      out({ stage: s, paused: true });
    });

  stage
    .command('resume')
    .description('starts the stage\'s consumers again everywhere')
    .argument('<STAGE>')
    .action(async (name: string) => {
      const s = parseStage(name, config().AMQP_PREFIX);
      await withControl((control) => control.resume(s));
      out({ stage: s, paused: false });
    });

  stage
    .command('drain')
    .description('waits until the stage\'s queues (both lanes) are empty: nothing ready, nothing unacked')
    .argument('<STAGE>')
    .option('--timeout <S>', 'give up after this many seconds (exit 3)', positiveIntOption('--timeout'))
    .action(async (name: string, o: { timeout?: number }) => {
      const s = parseStage(name, config().AMQP_PREFIX);
      const drained = await withTools(config(), async (t) => {
        await t.res.broker.waitReady();
        const stats = new QueueStats(t.res.broker, { managementUrl: t.config.RABBITMQ_MANAGEMENT_URL, amqpUrl: t.config.AMQP_URL, prefix: t.config.AMQP_PREFIX, log: t.log });
        const names = [t.res.broker.topology.workQueue(s), t.res.broker.topology.workQueue(s, 'bulk')];
        const deadline = o.timeout ? Date.now() + o.timeout * 1000 : Number.POSITIVE_INFINITY;
        for (;;) {
          const qs = (await stats.all()).filter((q) => names.includes(q.name));
          const left = qs.reduce((n, q) => n + q.ready + (q.unacked ?? 0), 0);
          process.stderr.write(`drain ${s}: ${left} message(s) left\n`);
          if (left === 0) return true;
          if (Date.now() >= deadline) return false;
          await new Promise((r) => setTimeout(r, 2_000));
        }
      });
      out({ stage: s, drained });
      // Not a usage error (exit 2): the command ran, and what it reports is that the stage did not drain.
      if (!drained) {
        process.stderr.write(`photopipe: ${s} still has messages after ${o.timeout} s\n`);
        process.exitCode = EXIT_SOMETHING_FAILED;
      }
    });
}
