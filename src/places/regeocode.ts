import type { Broker } from '../queues/broker.js';
import type { StageStateRepo } from '../db/photos/stage-state-repo.js';
import type { PlaceRepo } from '../db/places/place-repo.js';
import type { Config } from '../shared/config.js';

export interface RegeocodeReport {
  queued: number;
  provider: Config['GEOCODER'];
  tenant: string | null;
}

/**
 * Runs the geocode stage again for complete photos with GPS (after switching provider or data).
 * The messages go through the bulk lane, so a re-geocoding of a whole library never delays the
 * geocoding of live uploads; each photo stays complete while its place is found again.
 */
export async function regeocode(
  deps: { places: PlaceRepo; stages: StageStateRepo; broker: Broker },
  opts: { tenantId?: string; provider: Config['GEOCODER']; pageSize?: number },
): Promise<RegeocodeReport> {
  let queued = 0;
  let after: string | undefined;
  for (;;) {
    const page = await deps.places.withGps({ tenantId: opts.tenantId, limit: opts.pageSize ?? 500, after });
    if (page.length === 0) break;
    for (const ref of page) {
      if (!(await deps.stages.redoStage(ref, 'geocode'))) continue;
      await deps.broker.publishToStage('geocode', { v: 1, photoId: ref.photoId, tenantId: ref.tenantId, lane: 'bulk', geocoder: opts.provider }, { 'x-requested-by': 'regeocode' });
      queued++;
    }
    after = page[page.length - 1]?.photoId;
  }
  return { queued, provider: opts.provider, tenant: opts.tenantId ?? null };
}
