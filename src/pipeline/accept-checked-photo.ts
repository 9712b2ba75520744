import { PermanentError } from '../shared/errors.js';
import { sha256Hex } from '../shared/sha256.js';
import type { ContentOwner } from '../db/photos/content-claim-repo.js';
import { acceptPhoto, ContentOwnedError, type AcceptDeps, type AcceptedPhoto, type AcceptRequest, type RejectionCode } from './accept-photo.js';

export interface CheckedAcceptDeps extends AcceptDeps {
  /** Which photo holds a tenant's content (ContentClaimRepo.owners). */
  contents: { owners(tenantId: string, sha256s: readonly string[]): Promise<Map<string, ContentOwner>> };
}

export interface CheckedAcceptRequest extends Omit<AcceptRequest, 'sha256'> {
  /** The SHA-256 the client declared for the bytes (lower-case hex). */
  declaredSha256: string;
}

/** Either the new photo (queued, as acceptPhoto answers) or the photo that already holds these bytes. */
export type CheckedAcceptResult = { kind: 'accepted'; photo: AcceptedPhoto } | { kind: 'existing'; photo: ContentOwner };

/** A content whose owner fails between our two looks is tried again this many times. */
const RACE_ATTEMPTS = 3;

/**
 * A photo whose client declared its SHA-256: the bytes are hashed (off the event loop) and must
 * match, or nothing is stored ('checksum_mismatch'). When the tenant already has a photo holding
 * that content, it is the answer and nothing is stored or queued; otherwise the photo is accepted
 * with its hash recorded, so that of two concurrent uploads of the same bytes one is accepted and
 * the other answered with it (the unique index decides, as it does at ingest).
 */
export async function acceptCheckedPhoto(deps: CheckedAcceptDeps, req: CheckedAcceptRequest): Promise<CheckedAcceptResult> {
  const { declaredSha256, ...rest } = req;
  const actual = await sha256Hex(req.bytes);
  if (actual !== declaredSha256) {
    throw new PermanentError(
      'checksum_mismatch' satisfies RejectionCode,
      `the body's SHA-256 is ${actual}, not ${declaredSha256} as the request declared; nothing was stored (was the upload cut or changed on the way?)`,
    );
  }
  for (let attempt = 1; ; attempt++) {
    const known = (await deps.contents.owners(req.tenantId, [actual])).get(actual);
    if (known) return { kind: 'existing', photo: known };
    try {
      return { kind: 'accepted', photo: await acceptPhoto(deps, { ...rest, sha256: actual }) };
    } catch (err) {
      // Another upload of the same bytes won the race between our look and our insert.
      if (!(err instanceof ContentOwnedError) || attempt >= RACE_ATTEMPTS) throw err;
    }
  }
}
