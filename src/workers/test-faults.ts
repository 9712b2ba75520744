import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { STAGES, type StageName } from '../shared/config.js';
import { DeferError, RetryableError } from '../shared/errors.js';
import type { StageHandler } from '../queues/stage-consumer.js';

/**
 * Fault injection for the test harness only. Read from PHOTOPIPE_TEST_FAULTS and honoured only
 * when NODE_ENV=test, so it can never be switched on in production by accident.
 *   {"frame": {"failFirst": 2}}   retryable failure on attempts 1..2
 *   {"upload": {"always": true}}  retryable failure on every attempt
 *   {"thumbnail": {"hang": true}} never settles and ignores its AbortSignal
 *   {"thumbnail": {"hang": true, "tenant": "t1"}}  only for that tenant's photos; others run normally
 *   {"frame": {"slowMs": 60000}}  waits that long before working, and gives up when its AbortSignal fires
 *   {"thumbnail": {"crash": true}} kills its own process (SIGKILL, as the OOM killer would) on a message
 *   {"exif": {"exitOnStart": true}} the role's process exits with code 3 at start-up
 *   {"geocode": {"deferTimes": 3, "deferMs": 200}}  defers (DeferError) the first 3 deliveries of each message
 */
const faultSchema = z.object({
  failFirst: z.number().int().min(0).optional(),
  always: z.boolean().optional(),
  hang: z.boolean().optional(),
  slowMs: z.number().int().min(0).optional(),
  crash: z.boolean().optional(),
  exitOnStart: z.boolean().optional(),
  deferTimes: z.number().int().min(0).optional(),
  deferMs: z.number().int().min(1).optional(),
  /** Limits the fault to one tenant's messages, so other photos in flight show what it does not block. */
  tenant: z.string().optional(),
});
const faultsSchema = z.partialRecord(z.enum(STAGES), faultSchema);
export type StageFault = z.infer<typeof faultSchema>;

export function readTestFaults(env: NodeJS.ProcessEnv): Partial<Record<StageName, StageFault>> {
  const raw = env.PHOTOPIPE_TEST_FAULTS;
  if (!raw) return {};
  if (env.NODE_ENV !== 'test') throw new Error('PHOTOPIPE_TEST_FAULTS is set but NODE_ENV is not "test": refusing to inject faults');
  return faultsSchema.parse(JSON.parse(raw));
}

export function withFault(handler: StageHandler, fault: StageFault | undefined): StageHandler {
  if (!fault) return handler;
  return async (msg, ctx) => {
    if (fault.tenant !== undefined && msg.tenantId !== fault.tenant) return handler(msg, ctx);
    if (fault.crash) process.kill(process.pid, 'SIGKILL');
    if (fault.hang) return new Promise<void>(() => {});
    if (fault.slowMs !== undefined) await delay(fault.slowMs, undefined, { signal: ctx.signal });
    if (fault.deferTimes !== undefined && ctx.deferrals < fault.deferTimes) throw new DeferError(fault.deferMs ?? 1_000, 'injected deferral');
    if (fault.always) throw new RetryableError('injected_fault', 'injected failure (always)');
    if (fault.failFirst !== undefined && ctx.attempt <= fault.failFirst) {
      throw new RetryableError('injected_fault', `injected failure on attempt ${ctx.attempt}`);
    }
    return handler(msg, ctx);
  };
}
