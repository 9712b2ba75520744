import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { PermanentError, RetryableError, StageTimeoutError } from '../shared/errors.js';

export interface RawImage {
  width: number;
  height: number;
  channels: 4;
  data: Buffer;
}

const require = createRequire(import.meta.url);

/**
 * The decoding thread, as plain JavaScript so it runs the same from the TypeScript sources and
 * from dist/. libheif compiled to wasm runs synchronously; in a thread it cannot block the
 * worker's event loop (and so the acks of its other messages).
 */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const decode = require(workerData.decoderPath);
parentPort.once('message', async (input) => {
  try {
    const img = await decode({ buffer: input });
    const data = new Uint8Array(img.data.buffer, img.data.byteOffset, img.data.byteLength);
    parentPort.postMessage({ ok: true, width: img.width, height: img.height, data }, [data.buffer]);
  } catch (err) {
    parentPort.postMessage({ ok: false, message: err && err.message ? err.message : String(err) });
  }
});
`;

/**
 * Decodes HEVC-coded HEIC/HEIF (what iPhones upload; sharp's prebuilt libvips cannot) to RGBA
 * in a thread of its own, terminated on abort so a pathological file cannot keep a CPU busy
 * after its deadline. libheif applies the container's rotation and mirroring itself.
 */
export function decodeHeic(input: Buffer, signal: AbortSignal): Promise<RawImage> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason instanceof Error ? signal.reason : new StageTimeoutError('heic decode', 0));
    const worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { decoderPath: require.resolve('heic-decode') } });
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
      // The thread itself failed (not the decoder's verdict on the file): may work on another try.
      reject(new RetryableError('heic_thread_failed', `HEIC decoder thread failed: ${err.message}`, { cause: err }));
    });
    worker.postMessage(input);
  });
}
