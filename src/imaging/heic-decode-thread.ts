import { parentPort } from 'node:worker_threads';
import { createRequire } from 'node:module';

// libheif compiled to wasm runs synchronously; this thread keeps it off the worker's event loop.
const require = createRequire(import.meta.url);
const decode = require('heic-decode') as (opts: { buffer: Uint8Array }) => Promise<{ width: number; height: number; data: Uint8ClampedArray }>;

parentPort?.on('message', async (input: Uint8Array) => {
  try {
    const img = await decode({ buffer: input });
    const data = new Uint8Array(img.data.buffer, img.data.byteOffset, img.data.byteLength);
    parentPort?.postMessage({ ok: true, width: img.width, height: img.height, data }, [data.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort?.postMessage({ ok: false, message: err instanceof Error ? err.message : String(err) });
  }
});
