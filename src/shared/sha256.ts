import { webcrypto } from 'node:crypto';

/** SHA-256 as lower-case hex, off the event loop (WebCrypto runs it on the libuv thread pool). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await webcrypto.subtle.digest('SHA-256', bytes);
  return Buffer.from(digest).toString('hex');
}
