import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { PermanentError, StageTimeoutError } from '../shared/errors.js';

export interface RawImage {
  width: number;
  height: number;
  channels: 4;
  data: Buffer;
}

const threadFile = (): string => {
  const self = fileURLToPath(import.meta.url);
  return self.replace(/heic\.(ts|js)$/, (_m, ext: string) => `heic-decode-thread.${ext}`);
};

/**
 * Decodes HEVC-coded HEIC/HEIF (what iPhones upload; sharp's prebuilt libvips cannot) to RGBA
 * in a worker thread of its own, which is terminated on abort so a pathological file cannot
 * keep a CPU busy after its deadline. libheif applies the container's rotation/mirroring.
 */
export function decodeHeic(input: Buffer, signal: AbortSignal): Promise<RawImage> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new StageTimeoutError('heic decode', 0));
    const worker = new Worker(threadFile(), { execArgv: process.execArgv });
    const onAbort = () => {
      void worker.terminate();
      reject(signal.reason instanceof Error ? signal.reason : new StageTimeoutError('heic decode', 0));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      signal.removeEventListener('abort', onAbort);
      void worker.terminate();
    };
    worker.once('message', (m: { ok: true; width: number; height: number; data: Uint8Array } | { ok: false; message: string }) => {
      done();
      if (m.ok) resolve({ width: m.width, height: m.height, channels: 4, data: Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength) });
      else reject(new PermanentError('corrupt_image', `HEIC decode failed: ${m.message}`));
    });
    worker.once('error', (err) => {
      done();
      reject(new PermanentError('corrupt_image', `HEIC decode failed: ${err.message}`));
    });
    worker.postMessage(input);
  });
}
