import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../shared/logger.js';
import { BIN } from './process-specs.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
const FROM_SOURCE = fileURLToPath(import.meta.url).endsWith('.ts');

/**
 * What a supervisor's children run. In the container image that is the compiled CLI already. In
 * a source checkout the supervisor first transpiles src/ into dist/ (esbuild, file by file, under
 * a second; the same layout `npm run build` writes) and starts its children from there: every
 * child then skips the TypeScript loader, whose loader thread costs each process about 33 MB of
 * RSS and its start-up time, while still running exactly the source of this checkout. Type
 * checking stays with `npm run typecheck`. If the transpile fails, children run the source.
 */
export async function childEntry(log: Logger): Promise<string> {
  if (!FROM_SOURCE) return BIN;
  const started = Date.now();
  try {
    const esbuild = await import('esbuild');
    const result = await esbuild.build({
      entryPoints: [join(ROOT, 'src', '**', '*.ts')],
      outdir: join(ROOT, 'dist'),
      outbase: join(ROOT, 'src'),
      format: 'esm',
      platform: 'node',
      target: 'node20',
      sourcemap: true,
      bundle: false,
      logLevel: 'silent',
      metafile: true,
    });
    // esbuild keeps its service process for later calls; there are none (about 50 MB of RSS).
    await esbuild.stop();
    log.info({ files: Object.keys(result.metafile.inputs).length, ms: Date.now() - started }, 'children run the transpiled source (dist/)');
    return join(ROOT, 'dist', 'cli', 'photopipe.js');
  } catch (err) {
    log.warn({ err }, 'could not transpile the source; children run it through the TypeScript loader');
    return BIN;
  }
}
