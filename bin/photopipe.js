#!/usr/bin/env node
// Thin launcher. In a source checkout (src/ present, tsx installed) it runs the TypeScript
// directly so a developer never runs stale compiled code; in the container image, where only
// dist/ ships, it runs the compiled CLI.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// The AWS SDK warns on every start that its releases after early 2027 need Node >= 22. The
// versions are pinned in package-lock.json and the container image runs Node 22, so on a Node 20
// development machine the warning is noise in every process's log.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src', 'cli', 'photopipe.ts');
const compiled = join(root, 'dist', 'cli', 'photopipe.js');
if (existsSync(source) && existsSync(join(root, 'node_modules', 'tsx'))) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(source).href);
} else {
  await import(pathToFileURL(compiled).href);
}
