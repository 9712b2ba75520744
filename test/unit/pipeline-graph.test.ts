import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decisionsAt, defineGraph, droppableBlobs, isComplete, nextStages, stageList, successorsOf, waitingStages, type StageStates } from '../../src/pipeline/graph.js';
import { PIPELINE, STAGES } from '../../src/pipeline/photo-pipeline.js';
import { loadStageModule } from '../../src/workers/stage-loader.js';

const GPS = { gps: { lat: 43.46, lon: 11.88 }, profile: 'photo' as const };
const NO_GPS = { gps: null, profile: 'photo' as const };
const BATCH = { gps: null, profile: 'batch' as const };
/** What an upload's recorded states hold from ingest on: the batch stages skipped. */
const UP: StageStates = { convert: 'skipped', store: 'skipped' };

describe('the photo pipeline graph', () => {
  it('declares its stages in a topological order with one entry', () => {
    assert.deepEqual(STAGES, ['ingest', 'exif', 'geocode', 'frame', 'thumbnail', 'upload', 'convert', 'store']);
    assert.equal(PIPELINE.entry, 'ingest');
    assert.deepEqual(successorsOf(PIPELINE, 'ingest'), ['exif', 'frame', 'thumbnail', 'convert']);
  });

  it('fans out after ingest, joins frame and thumbnail before upload', () => {
    assert.deepEqual(nextStages(PIPELINE, { ingest: 'done' }, GPS, ['ingest']), { publish: ['exif', 'frame', 'thumbnail'], skip: ['convert', 'store'] }, 'an upload skips the batch stages');
    assert.deepEqual(nextStages(PIPELINE, { ingest: 'done', frame: 'done' }, GPS, ['frame']), { publish: [], skip: [] }, 'upload waits for thumbnail');
    assert.deepEqual(nextStages(PIPELINE, { ingest: 'done', frame: 'done', thumbnail: 'done' }, GPS, ['thumbnail']), { publish: ['upload'], skip: [] });
    assert.deepEqual(nextStages(PIPELINE, { ingest: 'done', frame: 'done', thumbnail: 'done', upload: 'done' }, GPS, ['thumbnail']), { publish: [], skip: [] }, 'a done stage is not published again');
  });

  it('routes photos with GPS to geocode and skips it for the others', () => {
    assert.deepEqual(nextStages(PIPELINE, { ingest: 'done', exif: 'done' }, GPS, ['exif']), { publish: ['geocode'], skip: [] });
    assert.deepEqual(nextStages(PIPELINE, { ingest: 'done', exif: 'done' }, NO_GPS, ['exif']), { publish: [], skip: ['geocode'] });
    assert.deepEqual(decisionsAt(PIPELINE, 'exif', { ingest: 'done' }, NO_GPS), { pending: [], skip: ['geocode'] }, 'decided in the same commit');
    assert.deepEqual(decisionsAt(PIPELINE, 'exif', { ingest: 'done', exif: 'pending' }, GPS), { pending: ['geocode'], skip: [] });
  });

  it('records what a photo will run as soon as it is decided', () => {
    assert.deepEqual(decisionsAt(PIPELINE, 'ingest', {}, NO_GPS), { pending: ['exif', 'frame', 'thumbnail'], skip: ['convert', 'store'] }, 'geocode is decided by exif, upload by frame and thumbnail');
    assert.deepEqual(decisionsAt(PIPELINE, 'ingest', { ingest: 'pending', exif: 'done' }, NO_GPS).pending, ['frame', 'thumbnail'], 'a recorded state is kept');
  });

  it('derives what a photo waits for (the reconciler)', () => {
    assert.deepEqual(waitingStages(PIPELINE, 'queued', {}), ['ingest']);
    assert.deepEqual(waitingStages(PIPELINE, 'processing', { ...UP, ingest: 'done', convert: 'skipped', store: 'skipped' }), ['exif', 'frame', 'thumbnail']);
    assert.deepEqual(waitingStages(PIPELINE, 'processing', { ingest: 'done' }), ['exif', 'frame', 'thumbnail', 'convert'], 'unrecorded conditional stages are republished and skip themselves');
    assert.deepEqual(waitingStages(PIPELINE, 'processing', { ...UP, ingest: 'done', exif: 'done', frame: 'done' }), ['geocode', 'thumbnail']);
    assert.deepEqual(waitingStages(PIPELINE, 'processing', { ...UP, ingest: 'done', exif: 'done', geocode: 'skipped', frame: 'done', thumbnail: 'done' }), ['upload']);
    assert.deepEqual(waitingStages(PIPELINE, 'processing', { ...UP, ingest: 'done', exif: 'failed', frame: 'done', thumbnail: 'done', upload: 'done' }), [], 'a failed stage is not waited for');
  });

  it('completes a photo when every stage is done or skipped', () => {
    const all: StageStates = { ...UP, ingest: 'done', exif: 'done', geocode: 'skipped', frame: 'done', thumbnail: 'done', upload: 'done' };
    assert.equal(isComplete(PIPELINE, all), true);
    assert.equal(isComplete(PIPELINE, { ...all, geocode: 'pending' }), false);
    assert.equal(isComplete(PIPELINE, { ...all, frame: 'failed' }), false);
    const { geocode: _g, ...missing } = all;
    assert.equal(isComplete(PIPELINE, missing), false, 'a stage not recorded yet is pending');
  });

  it('drops a blob once every stage that reads it is finished, never while a failed stage may be replayed', () => {
    assert.deepEqual(droppableBlobs(PIPELINE, { ...UP, ingest: 'done', frame: 'done' }, ['frame']), [], 'thumbnail still reads the working copy');
    assert.deepEqual(droppableBlobs(PIPELINE, { ...UP, ingest: 'done', frame: 'done', thumbnail: 'done' }, ['thumbnail']), ['work']);
    assert.deepEqual(droppableBlobs(PIPELINE, { ...UP, ingest: 'done', frame: 'done', thumbnail: 'done', upload: 'done' }, ['upload']).sort(), ['framed', 'thumbnail'], 'exif still reads the upload');
    assert.deepEqual(droppableBlobs(PIPELINE, { ...UP, ingest: 'done', exif: 'done', geocode: 'done', frame: 'done', thumbnail: 'done', upload: 'done' }, ['exif']), ['raw']);
    assert.deepEqual(droppableBlobs(PIPELINE, { ...UP, ingest: 'done', exif: 'failed', frame: 'done', thumbnail: 'done', upload: 'done' }, ['upload']).sort(), ['framed', 'thumbnail'], 'the upload stays for the exif replay');
  });

  it('lists every stage for the status API, in pipeline order', () => {
    assert.deepEqual(Object.keys(stageList(PIPELINE, 'processing', { ...UP, ingest: 'done' })), [...STAGES]);
    assert.deepEqual(stageList(PIPELINE, 'duplicate', { ingest: 'done' }), { ingest: 'done', exif: 'skipped', geocode: 'skipped', frame: 'skipped', thumbnail: 'skipped', upload: 'skipped', convert: 'skipped', store: 'skipped' });
    assert.equal(stageList(PIPELINE, 'processing', {}).upload, 'pending');
  });

  it('runs convert and store for a batch photo and skips the upload stages, deciding it at ingest', () => {
    assert.deepEqual(nextStages(PIPELINE, { ingest: 'done' }, BATCH, ['ingest']), { publish: ['convert'], skip: ['exif', 'geocode', 'frame', 'thumbnail', 'upload'] });
    assert.deepEqual(decisionsAt(PIPELINE, 'ingest', {}, BATCH), { pending: ['convert'], skip: ['exif', 'geocode', 'frame', 'thumbnail', 'upload'] });
    const afterIngest: StageStates = { ingest: 'done', exif: 'skipped', geocode: 'skipped', frame: 'skipped', thumbnail: 'skipped', upload: 'skipped', convert: 'pending' };
    assert.deepEqual(waitingStages(PIPELINE, 'processing', afterIngest), ['convert']);
    assert.deepEqual(nextStages(PIPELINE, { ...afterIngest, convert: 'done' }, BATCH, ['convert']), { publish: ['store'], skip: [] });
    assert.deepEqual(droppableBlobs(PIPELINE, { ...afterIngest, convert: 'done' }, ['convert']).sort(), ['raw', 'work'], 'the download goes once converted');
    assert.deepEqual(droppableBlobs(PIPELINE, { ...afterIngest, convert: 'done', store: 'done' }, ['store']), ['converted']);
    assert.equal(isComplete(PIPELINE, { ...afterIngest, convert: 'done', store: 'done' }), true);
    assert.equal(isComplete(PIPELINE, { ...afterIngest, convert: 'done' }), false);
  });

  it('has a loadable handler module for every stage', async () => {
    for (const s of STAGES) {
      const m = await loadStageModule(s);
      assert.equal(typeof m.create, 'function', s);
    }
  });
});

describe('a graph with extra stages: the derivations follow without other changes', () => {
  // What adding stages looks like: entries in the declaration (plus, for a real stage, its handler file).
  const g = defineGraph({
    ingest: { after: [], reads: ['raw'], writes: ['work'], defaults: { prefetch: 1, timeoutMs: 1_000 }, description: '' },
    exif: { after: ['ingest'], reads: ['raw'], writes: [], defaults: { prefetch: 1, timeoutMs: 1_000 }, description: '' },
    geocode: { after: ['exif'], when: { label: 'has GPS', test: (f) => f.gps !== null }, reads: [], writes: [], defaults: { prefetch: 1, timeoutMs: 1_000 }, description: '' },
    // New: runs after geocode (or its skip) on GPS photos only.
    landmarks: { after: ['geocode'], when: { label: 'has GPS', test: (f) => f.gps !== null }, reads: ['raw'], writes: [], defaults: { prefetch: 1, timeoutMs: 1_000 }, description: '' },
    frame: { after: ['ingest'], reads: ['raw', 'work'], writes: ['framed'], defaults: { prefetch: 1, timeoutMs: 1_000 }, description: '' },
    thumbnail: { after: ['ingest'], reads: ['raw', 'work'], writes: ['thumbnail'], defaults: { prefetch: 1, timeoutMs: 1_000 }, description: '' },
    // New: a second join, waiting for a rendition and for exif.
    watermark: { after: ['frame', 'exif'], reads: ['framed'], writes: [], defaults: { prefetch: 1, timeoutMs: 1_000 }, description: '' },
    upload: { after: ['watermark', 'thumbnail'], reads: ['raw', 'framed', 'thumbnail'], writes: [], defaults: { prefetch: 1, timeoutMs: 1_000 }, description: '' },
  });

  it('publishes and skips along the new edges', () => {
    assert.deepEqual(nextStages(g, { ingest: 'done', exif: 'done' }, GPS, ['exif']), { publish: ['geocode'], skip: [] }, 'watermark still waits for frame');
    assert.deepEqual(nextStages(g, { ingest: 'done', exif: 'done', frame: 'done' }, GPS, ['frame']), { publish: ['watermark'], skip: [] });
    assert.deepEqual(nextStages(g, { ingest: 'done', exif: 'done', geocode: 'done' }, GPS, ['geocode']), { publish: ['landmarks'], skip: [] });
    // Without GPS both conditional stages are skipped in one go (a skip finishes a stage, so what waits for it is decided too).
    assert.deepEqual(nextStages(g, { ingest: 'done', exif: 'done' }, NO_GPS, ['exif']), { publish: [], skip: ['geocode', 'landmarks'] });
    assert.deepEqual(nextStages(g, { ingest: 'done', frame: 'done', exif: 'done', watermark: 'done', thumbnail: 'done' }, GPS, ['watermark']), { publish: ['upload'], skip: [] });
  });

  it('waits for, completes and cleans up with the new stages', () => {
    assert.deepEqual(waitingStages(g, 'processing', { ingest: 'done', exif: 'done', frame: 'done', thumbnail: 'done' }), ['geocode', 'watermark']);
    const all: StageStates = { ingest: 'done', exif: 'done', geocode: 'skipped', landmarks: 'skipped', frame: 'done', thumbnail: 'done', watermark: 'done', upload: 'done' };
    assert.equal(isComplete(g, all), true);
    assert.equal(isComplete(g, { ...all, watermark: 'pending' }), false);
    assert.deepEqual(droppableBlobs(g, { ...all, upload: 'pending' }, ['watermark']), [], 'upload still reads the framed rendition');
    assert.deepEqual(droppableBlobs(g, all, ['upload']).sort(), ['framed', 'raw', 'thumbnail']);
    assert.deepEqual(Object.keys(stageList(g, 'queued', {})), ['ingest', 'exif', 'geocode', 'landmarks', 'frame', 'thumbnail', 'watermark', 'upload']);
  });

  it('refuses a declaration that cannot work', () => {
    const spec = { reads: [], writes: [], defaults: { prefetch: 1, timeoutMs: 1 }, description: '' } as const;
    assert.throws(() => defineGraph({ a: { ...spec, after: [] }, b: { ...spec, after: [] } }), /exactly one entry stage/);
    assert.throws(() => defineGraph({ a: { ...spec, after: [] }, b: { ...spec, after: ['c'] }, c: { ...spec, after: ['b'] } }), /declared after it/);
    assert.throws(() => defineGraph({ a: { ...spec, after: [] }, b: { ...spec, after: ['a'], reads: ['framed'] } }), /reads "framed", which no earlier stage writes/);
    assert.throws(() => defineGraph({ a: { ...spec, after: [] }, 'B!': { ...spec, after: ['a'] } }), /names are lower-case/);
  });
});
