import type { Broker } from '../queues/broker.js';
import type { PhotoFinalEvent } from '../queues/messages.js';
import type { PhotoRef } from '../db/photos/photo-row.js';

/**
 * Tells whoever follows photos (webhooks, batches) that one reached a final state. Called after
 * the state is committed; a failed publish fails the handler, whose retry publishes again (the
 * event is at least once, consumers drop repeats by photo id).
 */
export async function announceFinal(broker: Pick<Broker, 'publishEvent'>, ref: PhotoRef, status: PhotoFinalEvent['status']): Promise<void> {
  const event: PhotoFinalEvent = { v: 1, type: 'photo.final', photoId: ref.photoId, tenantId: ref.tenantId, status, at: new Date().toISOString() };
  await broker.publishEvent(`photo.final.${status}`, event);
}
