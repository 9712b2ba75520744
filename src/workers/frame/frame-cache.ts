import { getDefaultFrame, type FrameSpec } from '../../imaging/render.js';
import type { FrameRepo } from '../../db/frame-repo.js';

const TTL_MS = 10_000;

/** Tenant frames change rarely; a short per-process cache saves a Postgres round trip per photo. */
export class FrameCache {
  private readonly entries = new Map<string, { frame: FrameSpec; expires: number }>();

  constructor(private readonly frames: FrameRepo) {}

  async forTenant(tenantId: string): Promise<FrameSpec> {
    const hit = this.entries.get(tenantId);
    if (hit && hit.expires > Date.now()) return hit.frame;
    const custom = await this.frames.get(tenantId);
    const frame = custom ?? (await getDefaultFrame());
    if (this.entries.size > 1_000) this.entries.clear();
    this.entries.set(tenantId, { frame, expires: Date.now() + TTL_MS });
    return frame;
  }
}
