import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StageEvents } from '../queues/stage-events.js';

/**
 * Prometheus metrics of one process (prom-client): every process (API, each worker, the
 * reconciler) has its own registry with the process metrics (collectDefaultMetrics) and the
 * metrics of what it does. Names follow Prometheus conventions (base units, _total, _seconds,
 * _bytes); labels never carry photo or tenant ids.
 */
export class ProcessMetrics {
  readonly registry = new Registry();

  constructor(role: string, opts: { defaults?: boolean } = {}) {
    this.registry.setDefaultLabels({ role });
    if (opts.defaults !== false) collectDefaultMetrics({ register: this.registry });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Per-stage message outcomes from the consumer's typed events (stage-events.ts). */
export function instrumentStages(metrics: ProcessMetrics, events: StageEvents): void {
  const r = metrics.registry;
  const messages = new Counter({
    name: 'photopipe_stage_messages_total',
    help: 'Messages of a stage by outcome: started, succeeded, retried, deferred, dead_lettered, moot, handed_back',
    labelNames: ['stage', 'lane', 'outcome'],
    registers: [r],
  });
  const duration = new Histogram({
    name: 'photopipe_stage_duration_seconds',
    help: 'Time a stage spent on a message, by outcome',
    labelNames: ['stage', 'outcome'],
    buckets: DURATION_BUCKETS,
    registers: [r],
  });
  const inFlight = new Gauge({ name: 'photopipe_stage_in_flight', help: 'Messages a stage is working on now in this process', labelNames: ['stage'], registers: [r] });
  const failures = new Counter({
    name: 'photopipe_stage_failures_total',
    help: 'Failed attempts by stage and error code (retried or dead-lettered)',
    labelNames: ['stage', 'code'],
    registers: [r],
  });
  events.on((e) => {
    messages.inc({ stage: e.stage, lane: e.lane, outcome: e.type });
    if (e.type === 'started') {
      inFlight.inc({ stage: e.stage });
      return;
    }
    if (e.type === 'handed_back') {
      inFlight.dec({ stage: e.stage });
      return;
    }
    inFlight.dec({ stage: e.stage });
    duration.observe({ stage: e.stage, outcome: e.type }, e.durationMs / 1000);
    if (e.type === 'retried' || e.type === 'dead_lettered') failures.inc({ stage: e.stage, code: e.code });
  });
}
