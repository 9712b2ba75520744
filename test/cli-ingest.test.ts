import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { PHOTOS_DIR, PLACE_DIFFERENCES, readManifest, type ManifestRow } from './helpers/fixtures.js';
import { Stack } from './helpers/stack.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'photopipe.js');

interface Report {
  folder: string;
  files: number;
  accepted: number;
  duplicate: number;
  rejected: number;
  skipped: { name: string; reason: string }[];
  items: { name: string; sha256: string; outcome: string; photoId: string | null; reason: string | null; final?: { status: string; reason: string | null; place: string | null } }[];
  final?: { complete: number; duplicate: number; failed: number; places: Record<string, number> };
}

/**
 * `photopipe ingest` against a real stack, as a user runs it: a folder of real photos with GPS,
 * a text file and a link out of the folder; a second run sends nothing; a corrupt photo makes the
 * exit code non-zero and is named in the summary.
 */
describe('photopipe ingest DIR', () => {
  let stack: Stack;
  let dir: string;
  let outside: string;
  const withGps = readManifest()
    .filter((r) => r.gpsLat !== null && r.expect === 'complete' && r.format === 'jpeg' && r.geonameId !== null && !(r.file in PLACE_DIFFERENCES))
    .slice(0, 3);
  const withoutGps = readManifest().find((r) => r.gpsLat === null && r.expect === 'complete' && r.format === 'jpeg') as ManifestRow;
  const corrupt = readManifest().find((r) => r.file === 'jpg/corrupted.jpg') as ManifestRow;

  const cli = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) =>
      execFile(
        process.execPath,
        [BIN, ...args],
        { env: { ...process.env, ...stack.env, PHOTOPIPE_API_URL: stack.apiUrl, PHOTOPIPE_API_KEY: stack.apiKey }, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
      ),
    );
  const photoCount = async () => Number((await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM photos WHERE tenant_id = $1', [stack.tenant])).rows[0]?.n);

  before(async () => {
    assert.equal(withGps.length, 3, 'the manifest has three JPEGs with GPS and a place');
    assert.ok(withoutGps && corrupt);
    stack = await Stack.start({ workers: 'each' });
    dir = await mkdtemp(join(tmpdir(), 'photopipe-ingest-'));
    outside = await mkdtemp(join(tmpdir(), 'photopipe-outside-'));
    await mkdir(join(dir, 'sub'));
    for (const r of withGps) await copyFile(join(PHOTOS_DIR, r.file), join(dir, basename(r.file)));
    await copyFile(join(PHOTOS_DIR, withoutGps.file), join(dir, 'sub', basename(withoutGps.file)));
    await writeFile(join(dir, 'notes.txt'), 'not a photo\n');
    await copyFile(join(PHOTOS_DIR, withoutGps.file), join(outside, 'elsewhere.jpg'));
    await symlink(join(outside, 'elsewhere.jpg'), join(dir, 'link-out.jpg'));
  });

  after(async () => {
    await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (outside) await rm(outside, { recursive: true, force: true });
  });

  it('uploads the images, skips the rest with a note, waits and reports places; --json parses', async () => {
    const r = await cli(['ingest', dir, '--recursive', '--wait', '--json', '--concurrency', '3']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as Report;
    assert.equal(report.files, 4);
    assert.equal(report.accepted, 4);
    assert.equal(report.duplicate, 0);
    assert.equal(report.rejected, 0);
    assert.deepEqual(
      report.skipped.map((s) => s.name).sort(),
      ['link-out.jpg', 'notes.txt'],
    );
    assert.match(r.stderr, /skipped notes\.txt: not an image/);
    assert.match(r.stderr, /skipped link-out\.jpg: a link to outside the folder/);
    // Not a terminal: plain progress lines with the counts.
    assert.match(r.stderr, /ingest: 4\/4 files, .* files\/s, .* MB\/s, ETA .*; accepted 4, duplicate 0, rejected 0/);
    assert.deepEqual(report.final && { complete: report.final.complete, duplicate: report.final.duplicate, failed: report.final.failed }, { complete: 4, duplicate: 0, failed: 0 });
    assert.equal(await photoCount(), 4);

    // Every place in the summary is the photo's place in the API, and it is the manifest's town.
    for (const row of withGps) {
      const item = report.items.find((i) => i.name === basename(row.file));
      assert.ok(item?.photoId, `${row.file} in the report`);
      const place = (await stack.getPhoto(item.photoId)).body.place as { geonameId: number; name: string } | null;
      assert.equal(place?.geonameId, row.geonameId, `${row.file}: place`);
      const summaryPlace = item.final?.place ?? '';
      assert.ok(summaryPlace.startsWith(place.name), `${row.file}: summary place ${summaryPlace}`);
      assert.ok((report.final?.places[summaryPlace] ?? 0) >= 1);
    }
    assert.equal(report.items.find((i) => i.name === join('sub', basename(withoutGps.file)))?.final?.place, null);
  });

  it('a second run uploads nothing: the server has every checksum', async () => {
    const r = await cli(['ingest', dir, '--recursive']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /uploaded \(accepted\)\s+0\n/);
    assert.match(r.stdout, /already there\s+4\n/);
    assert.match(r.stdout, /rejected\s+0/);
    assert.equal(await photoCount(), 4, 'no new photo rows');
  });

  it('a corrupt photo: uploaded once, fails in the pipeline, named in the summary, exit code 3', async () => {
    await copyFile(join(PHOTOS_DIR, corrupt.file), join(dir, 'corrupted.jpg'));
    const r = await cli(['ingest', dir, '--recursive', '--wait']);
    assert.equal(r.code, 3, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /uploaded \(accepted\)\s+1\n/);
    assert.match(r.stdout, /already there\s+4\n/);
    assert.match(r.stdout, /failed\s+1\n/);
    assert.match(r.stdout, /problems:\n\s+corrupted\.jpg: failed \(\w+: .+\)/);
    assert.equal(await photoCount(), 5);
  });
});
