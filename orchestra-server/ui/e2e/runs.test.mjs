// The Runs view against a server with the run queue (the Redis store at
// 127.0.0.1:6379, started by scripts/ensure-services): a run queued from the
// page is opened in the Runs view with its status and result.
// Skipped, saying why, when Redis is not reachable or the server has no
// run queue.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launchBrowser, screenshotsDir, startServer } from './harness.mjs';

const REDIS = { host: '127.0.0.1', port: 6379 };

function redisReachable() {
  return new Promise((ok) => {
    const s = connect(REDIS, () => {
      s.end();
      ok(true);
    });
    s.once('error', () => ok(false));
  });
}

let server;
let browser;

before(async () => {
  // Redis is a required service here (scripts/ensure-services starts it): fail, never skip.
  if (!(await redisReachable())) {
    throw new Error(`no Redis at ${REDIS.host}:${REDIS.port}`);
  }
  server = await startServer(`store = "redis://${REDIS.host}:${REDIS.port}"\n[queue]\nworkers = 1\n`);
  const probe = await fetch(server.url('/runs/00000000-0000-0000-0000-000000000000'));
  const code = (await probe.json().catch(() => ({})))?.error?.code;
  if (probe.status === 404 && code === 'not_found') {
    throw new Error('this server has no GET /runs/{run_id}');
  }
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a run queued from the page shows in the Runs view with its status and result', async (t) => {
  const page = await browser.context.newPage();
  await page.goto(server.url('/ui'));
  await page.getByLabel('Pattern').selectOption('handoff');
  await page.getByRole('button', { name: 'Example' }).click();
  await page.getByLabel('Queue it').check();
  await page.getByRole('button', { name: 'Start run' }).click();
  await page.waitForURL('**/ui/runs/*');
  const runId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop());
  assert.match(runId, /^[0-9a-f-]{36}$/);
  const detail = page.locator('.run-detail');
  await detail.locator('.run-request').getByText('Where is my refund?').waitFor();
  // The worker finishes the run; Refresh shows its new status and result.
  const deadline = Date.now() + 30_000;
  for (;;) {
    assert.ok(Date.now() < deadline, 'the queued run did not complete in 30 s');
    await page.getByRole('button', { name: 'Refresh' }).first().click();
    const done = detail.locator('section.result .output-text').getByText('the refund was approved');
    try {
      await done.waitFor({ timeout: 500 });
      break;
    } catch {
      // Not finished yet: refresh again (bounded by the test timeout).
    }
  }
  await detail.getByText('completed').first().waitFor();
  assert.equal(await page.locator('form[aria-label="Answer the input request"]').count(), 0);
  mkdirSync(screenshotsDir, { recursive: true });
  await page.screenshot({ path: join(screenshotsDir, 'runs-queued.png'), fullPage: true });
  await page.close();
});
