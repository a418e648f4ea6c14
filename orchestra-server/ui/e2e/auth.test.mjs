// The console against a server with API keys: the page loads without a key,
// the API refuses it until the user enters one, and then everything works.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launchBrowser, screenshotsDir, startServer } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('[auth]\napi_keys = ["env:UI_TEST_KEY"]\n', { UI_TEST_KEY: 'console-secret-1' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('with auth on, the console works after the key is entered', async () => {
  const page = await browser.context.newPage();
  const authHeaders = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/orchestrate/stream') authHeaders.push(r.headers().authorization);
  });
  await page.goto(server.url('/ui'));
  await page.getByText('This server needs an API key').first().waitFor();
  mkdirSync(screenshotsDir, { recursive: true });

  await page.getByLabel('API key', { exact: true }).fill('wrong-key');
  await page.getByRole('button', { name: 'Save key' }).click();
  await page.getByText('This server needs an API key').first().waitFor();

  await page.getByLabel('API key', { exact: true }).fill('console-secret-1');
  await page.getByRole('button', { name: 'Save key' }).click();
  await page.locator('.agent-option:has(input[value="demo_triage"])').waitFor();
  assert.equal(await page.getByText('This server needs an API key').count(), 0);

  await page.getByLabel('Pattern').selectOption('handoff');
  await page.getByRole('button', { name: 'Example' }).click();
  await page.getByRole('button', { name: 'Start run' }).click();
  await page.locator('.timeline [data-kind=handoff]').getByText('demo_triage → demo_billing').waitFor();
  await page.locator('section.result .output-text').getByText('the refund was approved').waitFor();
  assert.deepEqual(authHeaders, ['Bearer console-secret-1']);
  await page.screenshot({ path: join(screenshotsDir, 'auth.png') });

  // A run that waits for approval is answered, followed and listed with the key.
  const runCalls = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname.startsWith('/runs/')) runCalls.push(r.headers().authorization);
  });
  await page.getByLabel('Pattern').selectOption('sequential');
  await page.getByRole('button', { name: 'Example' }).click();
  await page.getByLabel('Options').fill('{"approve_agents": ["demo_writer"]}');
  await page.getByRole('button', { name: 'Start run' }).click();
  await page.locator('section.input-request').getByText('Approve this agent?').waitFor();
  await page.locator('section.input-request').getByRole('button', { name: 'Approve' }).click();
  await page.locator('section.result .output-text').getByText('Draft: a short article').waitFor();
  const paused = await fetch(server.url('/orchestrate'), {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer console-secret-1' },
    body: JSON.stringify({ pattern: 'sequential', task: 'Tides', agents: ['demo_writer'], options: { approve_agents: ['demo_writer'] } }),
  }).then((r) => r.json());
  assert.equal(paused.status, 'waiting_for_input');
  await page.getByRole('link', { name: 'Runs' }).click();
  const row = page.locator(`.waiting-run[data-run="${paused.run_id}"]`);
  await row.getByRole('button', { name: 'Cancel run' }).click();
  await row.waitFor({ state: 'detached' });
  assert.ok(runCalls.length >= 3, `calls to /runs: ${runCalls.length}`);
  assert.ok(runCalls.every((h) => h === 'Bearer console-secret-1'), JSON.stringify(runCalls));

  // The key is kept in localStorage: a new page of the same profile has it.
  const again = await browser.context.newPage();
  await again.goto(server.url('/ui/sessions'));
  await again.locator('.sessions-table tr').nth(1).waitFor();
  assert.equal(await again.getByLabel('API key', { exact: true }).inputValue(), 'console-secret-1');
  await again.close();
  await page.close();
});
