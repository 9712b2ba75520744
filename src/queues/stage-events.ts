import type { StageName } from '../pipeline/photo-pipeline.js';
import type { ErrorClass } from '../shared/errors.js';

/**
 * What happened to one message of a stage, as typed events (BullMQ's worker events, Graphile's
 * job:complete/job:failed): metrics, the dashboard and tests subscribe instead of parsing logs.
 * photoId/tenantId are null only for a malformed message whose body could not be read.
 */
interface Base {
  stage: StageName;
  lane: 'interactive' | 'bulk';
  photoId: string | null;
  tenantId: string | null;
  attempt: number;
}

export type StageEvent =
  | (Base & { type: 'started' })
  | (Base & { type: 'succeeded'; durationMs: number })
  | (Base & { type: 'retried'; durationMs: number; code: string; delayMs: number })
  | (Base & { type: 'deferred'; durationMs: number; delayMs: number; reason: string; deferrals: number })
  | (Base & { type: 'dead_lettered'; durationMs: number; code: string; errorClass: ErrorClass })
  /** A failure after the stage had already succeeded (a duplicate delivery): dropped, nothing recorded. */
  | (Base & { type: 'moot'; durationMs: number; code: string })
  /** Shutdown gave the message back to the broker unfinished; its redelivery decides. */
  | (Base & { type: 'handed_back' });

export type StageEventType = StageEvent['type'];
export type StageEventListener = (event: StageEvent) => void;

/** One per process; consumers emit, subscribers listen. A throwing listener never affects a message. */
export class StageEvents {
  private readonly listeners = new Set<StageEventListener>();

  on(listener: StageEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: StageEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // Observers must not change outcomes.
      }
    }
  }
}
