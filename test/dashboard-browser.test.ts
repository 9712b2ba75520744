import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { distinctJpeg, photo } from './helpers/fixtures.js';
import { freePort, Stack, waitFor } from './helpers/stack.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARTIFACTS = join(import.meta.dirname, '..', '.local', 'test-artifacts');

/**
 * The live dashboard in a real browser (Debian's Chromium, driven by playwright-core): the page
 * asks for the admin key, shows the fleet's counts rising as photos go through, matching the
 * status API, shows a failure with its reason, and replays it from its button.
 */
describe('dashboard in a browser', () => {
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  const admin = `admin-${randomBytes(12).toString('hex')}`;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium at ${CHROMIUM} (apt-get install chromium; .ci/run installs it)`);
    stack = await Stack.start({ workers: 'one', api: false });
    const port = await freePort();
    stack.apiUrl = `http://127.0.0.1:${port}`;
    await stack.startApi({ PORT: String(port), ADMIN_API_KEY: admin });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  const cellNumber = async (table: string, rowLabel: string, column: number) => {
    const text = await page.locator(`[data-testid="${table}"] tbody tr`, { hasText: rowLabel }).first().locator('td').nth(column).textContent();
    return Number(text ?? NaN);
  };

  it('shows counts that rise and match the status API, a failure with its reason, and replays it', async () => {
    await page.goto(`${stack.apiUrl}/dashboard`);
    assert.equal(await page.title(), 'photopipe dashboard');
    assert.ok(!(await page.content()).includes(admin), 'the page holds no secret');
    await page.fill('#admin-key', admin);
    await page.click('#connect');
    await page.waitForFunction(`document.querySelector('[data-testid="status"]')?.textContent?.startsWith('live')`, undefined, { timeout: 20_000 });

    const files = ['jpg/gps/DSCN0010.jpg', 'jpg/gps/DSCN0012.jpg', 'jpg/Canon_PowerShot_S40.jpg', 'jpg/gps/DSCN0025.jpg'];
    const ids = [];
    for (const [i, f] of files.entries()) ids.push(await stack.uploadOk(distinctJpeg(photo(f), `dash-${i}`)));
    const corrupt = await stack.uploadOk(photo('jpg/corrupted.jpg'));
    await stack.waitAllFinal([...ids, corrupt], 120_000);

    // The page's totals reach what the status API says, fleet-wide (every stage ran once per good photo).
    await waitFor('the dashboard to count every photo', async () => (await cellNumber('stages', 'upload', 1)) === ids.length, 20_000, 250);
    for (const id of ids) assert.equal((await stack.getPhoto(id)).body.status, 'complete');
    assert.equal(await cellNumber('stages', 'ingest', 1), ids.length + 1, 'ingest succeeded for the corrupt file too');
    await waitFor('photos by status', async () => (await cellNumber('photos', 'complete', 1)) === ids.length && (await cellNumber('photos', 'failed', 1)) === 1, 20_000, 250);

    const failure = page.locator('[data-testid="failures"] tbody tr', { hasText: corrupt });
    await failure.waitFor({ timeout: 20_000 });
    const reason = await failure.locator('td').nth(3).textContent();
    assert.match(reason ?? '', /corrupt|premature|decode/i);
    const status = await stack.getPhoto(corrupt);
    assert.equal(status.body.status, 'failed');

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });

    await page.click(`[data-testid="replay-${corrupt}"]`);
    await page.waitForFunction(`/replayed [1-9]/.test(document.querySelector('[data-testid="replay-result"]')?.textContent ?? '')`, undefined, { timeout: 20_000 });
    // A corrupt file fails again: what matters is that the replay went through the pipeline.
    await waitFor('the replayed photo to be processed again', async () => {
      const { rows } = await stack.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM photos WHERE id = $1 AND status = 'failed' AND updated_at > now() - interval '30 seconds'`, [corrupt]);
      return rows[0]?.n === 1;
    }, 30_000, 250);
  });
});
