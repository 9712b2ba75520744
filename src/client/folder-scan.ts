import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open, readdir, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { SNIFF_BYTES, sniffImageFormat } from '../imaging/sniff.js';

export interface FolderFile {
  path: string;
  /** Relative to the folder, for display and the uploaded file name. */
  name: string;
  bytes: number;
}

export interface Skipped {
  name: string;
  reason: string;
}

/**
 * The image files of a folder (recursively if asked), told apart by their first bytes like the API
 * does; everything else is skipped with a reason. Symbolic links are followed only when they stay
 * inside the folder: a link out of it (or a loop) is skipped.
 */
export async function scanFolder(dir: string, opts: { recursive: boolean }): Promise<{ files: FolderFile[]; skipped: Skipped[] }> {
  const root = await realpath(dir);
  if (!(await stat(root)).isDirectory()) throw new Error(`${dir} is not a folder`);
  const files: FolderFile[] = [];
  const skipped: Skipped[] = [];
  const seen = new Set<string>();
  const inside = (p: string) => p === root || p.startsWith(root + sep);
  const walk = async (folder: string) => {
    const entries = (await readdir(folder, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const path = join(folder, e.name);
      const name = relative(root, path);
      let real = path;
      if ((await lstat(path)).isSymbolicLink()) {
        real = await realpath(path).catch(() => '');
        if (!real || !inside(real)) {
          skipped.push({ name, reason: 'a link to outside the folder' });
          continue;
        }
      }
      if (seen.has(real)) continue;
      seen.add(real);
      const s = await stat(real).catch(() => null);
      if (!s) {
        skipped.push({ name, reason: 'unreadable' });
        continue;
      }
      if (s.isDirectory()) {
        if (opts.recursive) await walk(real);
        continue;
      }
      if (!s.isFile()) continue;
      if (s.size === 0) {
        skipped.push({ name, reason: 'empty file' });
        continue;
      }
      const head = Buffer.alloc(SNIFF_BYTES);
      const fh = await open(real, 'r');
      try {
        await fh.read(head, 0, SNIFF_BYTES, 0);
      } finally {
        await fh.close();
      }
      if (!sniffImageFormat(head)) {
        skipped.push({ name, reason: 'not an image (JPEG, PNG, WebP, TIFF, GIF, AVIF, HEIC/HEIF)' });
        continue;
      }
      files.push({ path: real, name, bytes: s.size });
    }
  };
  await walk(root);
  return { files, skipped };
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
