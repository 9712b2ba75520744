import { createHash } from 'node:crypto';
import type { PhotoRow } from '../db/photos/photo-row.js';
import type { VariantRow } from '../db/photos/variant-repo.js';
import type { PhotoFinalEvent } from '../queues/messages.js';
import { publicFailure, type PublicFailure } from '../api/failure-reasons.js';

/**
 * The id of a photo's final event: the same for every copy of one event (photo.final is published
 * at least once), so deliveries are made once per event and receivers can drop repeats by it.
 */
export function eventIdOf(e: Pick<PhotoFinalEvent, 'photoId' | 'status'>): string {
  return `evt_${createHash('sha256').update(`${e.photoId}:${e.status}`).digest('hex').slice(0, 32)}`;
}

interface RenditionView {
  url: string;
  width: number;
  height: number;
  bytes: number;
  contentType: string;
}

/** The JSON body POSTed to a webhook (README "Webhooks"). */
export interface PhotoEventBody {
  id: string;
  type: 'photo.final';
  createdAt: string;
  photo: {
    id: string;
    status: PhotoFinalEvent['status'];
    statusUrl: string;
    duplicateOf: string | null;
    sha256: string | null;
    originalName: string | null;
    /** The public renditions (framed, thumbnail); the original's presigned URL is short-lived, so it is only in statusUrl's answer. */
    variants: Partial<Record<'framed' | 'thumbnail', RenditionView>> | null;
    error: PublicFailure | null;
    completedAt: string | null;
  };
}

export function photoEventBody(event: PhotoFinalEvent, photo: PhotoRow, variants: VariantRow[], statusUrl: string): PhotoEventBody {
  const renditions: Partial<Record<'framed' | 'thumbnail', RenditionView>> = {};
  for (const v of variants) {
    if ((v.kind === 'framed' || v.kind === 'thumbnail') && v.url) renditions[v.kind] = { url: v.url, width: v.width, height: v.height, bytes: v.bytes, contentType: v.contentType };
  }
  return {
    id: eventIdOf(event),
    type: 'photo.final',
    createdAt: event.at,
    photo: {
      id: photo.id,
      status: event.status,
      statusUrl,
      duplicateOf: photo.duplicateOf,
      sha256: photo.sha256,
      originalName: photo.originalName,
      variants: Object.keys(renditions).length > 0 ? renditions : null,
      // Tenants see the public reason for a code, never the operator's detail.
      error: event.status === 'failed' && photo.error ? publicFailure(photo.error) : null,
      completedAt: photo.completedAt?.toISOString() ?? null,
    },
  };
}
