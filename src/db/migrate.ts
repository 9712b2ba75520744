import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import type { Logger } from '../shared/logger.js';

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');

/**
 * Creates the database if it does not exist yet (a fresh laptop or CI machine), then applies
 * pending migrations. node-pg-migrate takes an advisory lock, so several processes starting at
 * once (scaled containers) apply each migration exactly once.
 */
export async function migrate(databaseUrl: string, log: Logger): Promise<string[]> {
  await ensureDatabase(databaseUrl, log);
  const applied = await runner({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    direction: 'up',
    migrationsTable: 'pgmigrations',
    checkOrder: true,
    log: (msg: string) => log.debug(msg),
    logger: { debug: () => {}, info: (m: string) => log.debug(m), warn: (m: string) => log.warn(m), error: (m: string) => log.error(m) },
  });
  const names = applied.map((m) => m.name);
  if (names.length > 0) log.info({ migrations: names }, 'migrations applied');
  return names;
}

async function ensureDatabase(databaseUrl: string, log: Logger): Promise<void> {
  const url = new URL(databaseUrl);
  const dbName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!dbName) return;
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== '3D000') throw err; // 3D000 = invalid_catalog_name: no such database
  } finally {
    await client.end().catch(() => {});
  }
  url.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 5_000 });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(dbName)}`);
    log.info({ database: dbName }, 'database created');
  } catch (err) {
    if ((err as { code?: string }).code !== '42P04') throw err; // created concurrently by another process
  } finally {
    await admin.end();
  }
}
