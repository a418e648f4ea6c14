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

  // The key is kept in localStorage: a new page of the same profile has it.
  const again = await browser.context.newPage();
  await again.goto(server.url('/ui/sessions'));
  await again.locator('.sessions-table tr').nth(1).waitFor();
  assert.equal(await again.getByLabel('API key', { exact: true }).inputValue(), 'console-secret-1');
  await again.close();
  await page.close();
});
