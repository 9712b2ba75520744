import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Logger } from '../shared/logger.js';

const require = createRequire(import.meta.url);

interface S3rverInstance {
  run(): Promise<{ port: number; address: string }>;
  close(): Promise<void>;
}
type S3rverCtor = new (opts: Record<string, unknown>) => S3rverInstance;

/** Credentials s3rver checks signatures against; only ever used for this local development server. */
export const LOCAL_S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/**
 * A local S3-compatible server (s3rver, writing to a folder) for machines without one: `npm start`
 * runs it when S3_ENDPOINT is unset, and the tests run it too. Containers use MinIO instead.
 */
export async function startLocalS3(opts: { port: number; directory: string; bucket: string; log?: Logger }): Promise<{ endpoint: string; close: () => Promise<void> }> {
  mkdirSync(opts.directory, { recursive: true });
  let S3rver: S3rverCtor;
  try {
    S3rver = require('s3rver') as S3rverCtor;
  } catch (err) {
    // s3rver (old dependencies, no authentication) is a devDependency: it never ships in the image.
    throw new Error('the local S3 server is a development tool (s3rver, a devDependency, is not installed): set S3_ENDPOINT to a real S3-compatible store', { cause: err });
  }
  const server = new S3rver({
    address: '127.0.0.1',
    port: opts.port,
    directory: opts.directory,
    silent: true,
    vhostBuckets: false,
    configureBuckets: [{ name: opts.bucket }],
  });
  const addr = await server.run();
  const endpoint = `http://127.0.0.1:${addr.port}`;
  opts.log?.info({ endpoint, directory: opts.directory }, 'local S3 server started');
  return { endpoint, close: () => server.close() };
}
