import { z } from 'zod';

/**
 * The queues of batch ingestion's service roles (entries of SERVICE_QUEUES) and their messages.
 *   batch.download  one URL of a batch to download (batch-download role)
 *   batch.dispatch  "look at this customer's batches now" (batch-dispatch role; single active consumer)
 *   batch.photos    photo.final.* events, which wake the dispatcher for the photo's customer
 */
export const BATCH_DOWNLOAD = 'batch.download';
export const BATCH_DISPATCH = 'batch.dispatch';
export const BATCH_PHOTOS = 'batch.photos';

export const downloadMessageSchema = z.object({
  v: z.literal(1),
  batchId: z.uuid(),
  tenantId: z.string().min(1).max(200),
  seq: z.number().int().positive(),
});
export type DownloadMessage = z.infer<typeof downloadMessageSchema>;

export const dispatchMessageSchema = z.object({
  v: z.literal(1),
  tenantId: z.string().min(1).max(200),
});
export type DispatchMessage = z.infer<typeof dispatchMessageSchema>;
