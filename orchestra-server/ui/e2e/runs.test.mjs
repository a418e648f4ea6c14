// The Runs view against a server with the run queue (the Redis store at
// 127.0.0.1:6379, started by scripts/ensure-services): a run queued from the
// page is opened in the Runs view with its status and result, and a run that
// paused for approval streams its continuation (the answer's events_url)
// once approved. Fails, saying why, when Redis is not reachable or the server
// has no run queue.

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

test('an answered run on the run queue streams its continuation into the page', async () => {
  const page = await browser.context.newPage();
  const streamed = [];
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    if (/^\/runs\/[^/]+\/events$/.test(path)) streamed.push(path);
  });
  await page.goto(server.url('/ui'));
  await page.getByLabel('Pattern').selectOption('sequential');
  await page.getByRole('button', { name: 'Example' }).click();
  await page.getByLabel('Options').fill('{"approve_agents": ["demo_writer"]}');
  await page.getByRole('button', { name: 'Start run' }).click();
  const question = page.locator('section.input-request');
  await question.getByText('Approve this agent?').waitFor();
  await question.getByRole('button', { name: 'Approve' }).click();
  // The 202 answer carries events_url: the resumed run's events arrive live.
  await page.locator('.timeline [data-kind=run_resumed]').waitFor();
  await page.locator('.timeline article.card[data-agent=demo_writer]').waitFor();
  await page.locator('section.result .output-text').getByText('Draft: a short article').waitFor();
  assert.equal(streamed.length, 1, JSON.stringify(streamed));
  assert.match(streamed[0], /\.resume-\d+\/events$/);
  await page.close();
});
