import { CommanderError } from 'commander';
import { ConfigError } from '../shared/config.js';
import { UsageError } from './args.js';
import { buildProgram } from './program.js';

/**
 * `photopipe`: exit codes 0 (done, or --help), 1 (failed), 2 (wrong command line or invalid
 * configuration; the message names what is wrong).
 */
async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  if (argv.length === 0) {
    process.stdout.write(program.helpInformation());
    return;
  }
  await program.parseAsync(argv, { from: 'user' });
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // commander already printed its message (or the help, for --help and --version).
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  if (err instanceof ConfigError || err instanceof UsageError) {
    process.stderr.write(`photopipe: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`photopipe: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
