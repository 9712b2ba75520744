import { STAGES } from '../pipeline/photo-pipeline.js';
import { SharedResult } from '../shared/shared-result.js';
import type { FailureRepo, FailedPhoto } from '../db/photos/failure-repo.js';
import type { PhotoStatus } from '../db/photos/photo-row.js';
import type { FleetCounts, FleetSecond, FleetStatsReader } from './fleet-stats.js';
import type { QueueStat, QueueStats } from './queue-stats.js';

export interface DashboardSnapshot {
  /** The second the counts are of (two seconds ago: every process has flushed it). */
  t: number;
  stages: readonly string[];
  second: FleetCounts;
  totals: FleetCounts;
  queues: QueueStat[];
  photos: Record<PhotoStatus, number> | null;
  failures: (Omit<FailedPhoto, 'failedAt' | 'createdAt'> & { failedAt: string })[];
}

/** Workers flush their counts once a second: a second is complete two seconds later. */
const SETTLE_SECONDS = 2;

/**
 * What the live dashboard shows, fleet-wide: per-stage counts per second (from every worker, via
 * Redis), queue depths and consumers, photos by status, the latest failures. Each source is read
 * at most once per its interval however many dashboards are open.
 */
export class DashboardData {
  private readonly photos: SharedResult<Record<PhotoStatus, number>>;
  private readonly failures: SharedResult<FailedPhoto[]>;
  private readonly snap: SharedResult<DashboardSnapshot>;

  constructor(private readonly deps: { fleet: FleetStatsReader; queues: QueueStats; failures: FailureRepo }) {
    this.photos = new SharedResult(() => deps.failures.countByStatus(), 5_000);
    this.failures = new SharedResult(async () => (await deps.failures.list({ limit: 20 })).items, 2_000);
    this.snap = new SharedResult(() => this.read(), 900);
  }

  snapshot(): Promise<DashboardSnapshot> {
    return this.snap.get();
  }

  history(seconds: number): Promise<FleetSecond[]> {
    const to = Math.floor(Date.now() / 1000) - SETTLE_SECONDS;
    return this.deps.fleet.seconds(to - seconds + 1, to);
  }

  private async read(): Promise<DashboardSnapshot> {
    const t = Math.floor(Date.now() / 1000) - SETTLE_SECONDS;
    const [seconds, totals, queues, photos, failures] = await Promise.all([
      this.deps.fleet.seconds(t, t),
      this.deps.fleet.totals(),
      this.deps.queues.all().catch(() => []),
      this.photos.get().catch(() => null),
      this.failures.get().catch(() => []),
    ]);
    return {
      t,
      stages: STAGES,
      second: seconds[0]?.counts ?? {},
      totals,
      queues,
      photos,
      failures: failures.map(({ failedAt, createdAt: _c, ...f }) => ({ ...f, failedAt: failedAt.toISOString() })),
    };
  }
}
