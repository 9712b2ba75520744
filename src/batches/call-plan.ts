/**
 * When a batch hands its ready images to the customer's batch API. The first call waits for
 * minBatchSize ready images (X), unless no more can become ready (a small batch, or the rest
 * failed); each later call takes whatever became ready since the previous one started, up to
 * maxBatchSize, as soon as the customer has no call in flight.
 */
export interface CallReadiness {
  /** Images converted, stored and not handed over yet. */
  ready: number;
  /** Items that may still become ready (not downloaded yet, or in the pipeline). */
  moreToCome: boolean;
  /** Calls this batch made so far (a refused start does not count). */
  callsSoFar: number;
  minBatchSize: number;
}

export function shouldStartCall(b: CallReadiness): boolean {
  if (b.ready === 0) return false;
  if (b.callsSoFar === 0) return b.ready >= b.minBatchSize || !b.moreToCome;
  return true;
}
