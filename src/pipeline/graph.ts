import type { BlobKind } from '../shared/blob-store.js';

/**
 * The pipeline's shape as data. Each stage names the stages it waits for, an optional condition
 * on what earlier stages found out about the photo, and the blobs it reads and writes. Everything
 * that depends on the shape is derived here from that declaration, never kept by hand elsewhere:
 * what follows a finished stage, what a photo is waiting for (the reconciler), when a photo is
 * complete, which blobs can go, and the stage list the status API shows.
 */

export type StageState = 'pending' | 'done' | 'skipped' | 'failed';
export type StageStates<N extends string = string> = Partial<Record<N, StageState>>;

/** What a stage condition may look at: facts earlier stages recorded about the photo. */
export interface PhotoFacts {
  gps: { lat: number; lon: number } | null;
  /** What the photo is for, fixed when it is accepted: an upload ('photo') or a batch download ('batch'). */
  profile: 'photo' | 'batch';
}

export interface StageCondition {
  /** Human-readable, for help texts and logs ("has GPS"). */
  label: string;
  test: (facts: PhotoFacts) => boolean;
}

export interface StageSpec<N extends string = string> {
  /** Stages that must be finished (done or skipped) before this one runs. Empty for the entry stage. */
  after: readonly N[];
  /** Runs only when this holds once its predecessors are finished; otherwise the stage is skipped. */
  when?: StageCondition;
  /** Blobs the stage reads: a blob is dropped once every stage that reads it is finished. */
  reads: readonly BlobKind[];
  /** Blobs the stage may write (checked: every blob a stage reads is written by an earlier stage, or accepted). */
  writes: readonly BlobKind[];
  /**
   * A terminal failure does not fail the photo: the stage is recorded failed (its dead letter can be
   * replayed), counts as finished for what follows and for completion, and the photo goes on.
   */
  bestEffort?: boolean;
  /** Defaults for STAGE_PREFETCH and STAGE_TIMEOUT_MS. */
  defaults: { prefetch: number; timeoutMs: number };
  description: string;
}

// NoInfer: the stage names come from the keys; `after` is only checked against them.
export type GraphSpec<N extends string> = { readonly [K in N]: StageSpec<NoInfer<N>> };

export interface PipelineGraph<N extends string = string> {
  /** Every stage in a topological order (the declaration order, checked). */
  readonly stages: readonly N[];
  /** The one stage with no predecessor: where an accepted photo starts. */
  readonly entry: N;
  readonly spec: GraphSpec<N>;
}

/** Blobs that exist before any stage runs: what acceptPhoto stores. */
export const ACCEPTED_BLOBS: readonly BlobKind[] = ['raw'];

/** Done or skipped; a best-effort stage's failure is finished too. */
export function isFinished<N extends string>(g: PipelineGraph<N>, stage: N, state: StageState | undefined): boolean {
  return state === 'done' || state === 'skipped' || (state === 'failed' && g.spec[stage].bestEffort === true);
}

/** The stages whose failure does not fail a photo (completion treats their failure as finished). */
export function bestEffortStages<N extends string>(g: PipelineGraph<N>): N[] {
  return g.stages.filter((s) => g.spec[s].bestEffort === true);
}

/**
 * Validates a declaration: exactly one entry stage, predecessors that exist and come earlier in
 * the declaration (so the order is topological and there is no cycle), blobs that some earlier
 * stage (or the accept step) writes.
 */
export function defineGraph<N extends string>(spec: GraphSpec<N>): PipelineGraph<N> {
  const stages = Object.keys(spec) as N[];
  const seen = new Set<N>();
  const written = new Set<BlobKind>(ACCEPTED_BLOBS);
  const entries: N[] = [];
  for (const name of stages) {
    const s = spec[name];
    if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new Error(`stage "${name}": names are lower-case letters, digits and _`);
    if (s.after.length === 0) entries.push(name);
    for (const dep of s.after) {
      if (!(dep in spec)) throw new Error(`stage "${name}" waits for unknown stage "${dep}"`);
      if (!seen.has(dep)) throw new Error(`stage "${name}" waits for "${dep}", which is declared after it (declare stages in order; no cycles)`);
    }
    for (const blob of s.reads) {
      if (!written.has(blob)) throw new Error(`stage "${name}" reads "${blob}", which no earlier stage writes`);
    }
    for (const blob of s.writes) written.add(blob);
    seen.add(name);
  }
  if (entries.length !== 1) throw new Error(`a pipeline has exactly one entry stage (no "after"); found ${entries.length}: ${entries.join(', ')}`);
  return { stages, entry: entries[0] as N, spec };
}

/** The stages that wait for `stage` directly. */
export function successorsOf<N extends string>(g: PipelineGraph<N>, stage: N): N[] {
  return g.stages.filter((s) => g.spec[s].after.includes(stage));
}

export interface NextStages<N extends string> {
  /** Stages to publish now: pending, every predecessor finished, condition true. */
  publish: N[];
  /** Stages to record as skipped: pending, every predecessor finished, condition false. */
  skip: N[];
}

/**
 * What follows once `justFinished` are finished, given the photo's stage states and facts. Only
 * stages waiting for one of `justFinished` are considered (a stage that was ready before is
 * somebody else's to publish). A skipped stage counts as finished at once, so what waits for it is
 * considered too (in declaration order, which is topological).
 */
export function nextStages<N extends string>(g: PipelineGraph<N>, states: StageStates<N>, facts: PhotoFacts, justFinished: readonly N[]): NextStages<N> {
  const now: StageStates<N> = { ...states };
  const finished = new Set<N>(justFinished);
  for (const s of justFinished) if (!isFinished(g, s, now[s])) now[s] = 'done';
  const out: NextStages<N> = { publish: [], skip: [] };
  for (const s of g.stages) {
    const spec = g.spec[s];
    if ((now[s] ?? 'pending') !== 'pending') continue;
    if (!spec.after.some((d) => finished.has(d))) continue;
    if (!spec.after.every((d) => isFinished(g, d, now[d]))) continue;
    if (spec.when && !spec.when.test(facts)) {
      out.skip.push(s);
      now[s] = 'skipped';
      finished.add(s);
    } else {
      out.publish.push(s);
    }
  }
  return out;
}

/**
 * The stages a photo is waiting for, from its recorded states: the reconciler republishes these.
 * A queued photo (or one whose entry stage is not done) waits for the entry stage; otherwise every
 * pending stage whose predecessors are all finished. Conditions are left to the stage itself: a
 * republished stage whose condition is false records itself as skipped.
 */
export function waitingStages<N extends string>(g: PipelineGraph<N>, status: string, states: StageStates<N>): N[] {
  if (status === 'queued' || states[g.entry] !== 'done') return [g.entry];
  return g.stages.filter((s) => (states[s] ?? 'pending') === 'pending' && g.spec[s].after.every((d) => isFinished(g, d, states[d])));
}

/** A photo is complete when every stage of the graph is done or skipped (or failed, for a best-effort stage). */
export function isComplete<N extends string>(g: PipelineGraph<N>, states: StageStates<N>): boolean {
  return g.stages.every((s) => isFinished(g, s, states[s]));
}

/**
 * Blobs that can go once `justFinished` are finished: those the finished stages read, now that
 * every stage reading them is finished. A failed stage is not finished, so a failed photo keeps
 * what a replay needs.
 */
export function droppableBlobs<N extends string>(g: PipelineGraph<N>, states: StageStates<N>, justFinished: readonly N[]): BlobKind[] {
  const candidates = new Set<BlobKind>(justFinished.flatMap((s) => g.spec[s].reads));
  return [...candidates].filter((blob) => g.stages.every((s) => !g.spec[s].reads.includes(blob) || isFinished(g, s, states[s])));
}

/**
 * Every stage with its state, in pipeline order, as the status API shows it: a stage not recorded
 * yet is pending, and every stage of a duplicate that did not run is skipped.
 */
export function stageList<N extends string>(g: PipelineGraph<N>, status: string, states: StageStates<N>): Record<N, StageState> {
  const out = {} as Record<N, StageState>;
  for (const s of g.stages) out[s] = states[s] ?? (status === 'duplicate' ? 'skipped' : 'pending');
  return out;
}

/**
 * What this commit can already record about later stages, so that a photo's recorded states
 * always say what it still waits for: when the entry stage finishes, every stage without a
 * condition will run (pending); when any stage finishes, each successor it makes ready (its other
 * predecessors finished before) is pending or, when its condition is false on the facts as they
 * will be, skipped. Recording skips in the same statement saves a round trip; nextStages after
 * the commit catches any that concurrent commits made ready meanwhile.
 */
export function decisionsAt<N extends string>(g: PipelineGraph<N>, stage: N, before: StageStates<N>, facts: PhotoFacts): { pending: N[]; skip: N[] } {
  const next = nextStages(g, before, facts, [stage]);
  const pending = new Set<N>(next.publish);
  if (stage === g.entry) for (const s of g.stages) if (s !== stage && !g.spec[s].when) pending.add(s);
  return { pending: g.stages.filter((s) => pending.has(s) && before[s] === undefined), skip: next.skip };
}
