// End-to-end tests of the web console: the real orchestra-server (demo
// agents plus one HTTP agent that is down, for retries, fallbacks and
// replanning) and headless Chromium. Run by scripts/test-ui.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TIMEOUT, closedPort, launchBrowser, screenshotsDir, startServer } from './harness.mjs';

let server;
let browser;
let page;

async function shot(name) {
  mkdirSync(screenshotsDir, { recursive: true });
  await page.screenshot({ path: join(screenshotsDir, `${name}.png`), fullPage: true });
}

/** Fills the run form as a user would and starts the run. */
async function startRun({ pattern, agents = [], task, options }) {
  await page.goto(server.url('/ui'));
  await page.getByLabel('Pattern').selectOption(pattern);
  for (const a of agents) await page.locator(`input[name=agents][value="${a}"]`).check();
  await page.getByLabel('Task').fill(task);
  if (options) await page.getByLabel('Options').fill(JSON.stringify(options));
  await page.getByRole('button', { name: 'Start run' }).click();
}

const result = () => page.locator('section.result');
const timeline = () => page.locator('.timeline');

before(async () => {
  const down = await closedPort();
  server = await startServer(`demo_agents = true

[[agents]]
name = "flaky_search"
kind = "http"
description = "Searches the web (this test's copy is down)"
url = "http://127.0.0.1:${down}/invoke"
timeout_ms = 2000
`);
  browser = await launchBrowser();
  page = await browser.context.newPage();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('run view', () => {
  test('lists the five patterns and the registered agents', async () => {
    await page.goto(server.url('/ui'));
    const options = page.locator('#pattern option');
    await options.nth(4).waitFor({ state: 'attached' });
    assert.deepEqual(await options.allTextContents(), ['sequential', 'concurrent', 'handoff', 'group_chat', 'dynamic']);
    for (const name of ['demo_triage', 'demo_billing', 'demo_researcher', 'demo_writer', 'demo_critic', 'demo_summarizer', 'flaky_search']) {
      await page.locator(`.agent-option:has(input[value="${name}"])`).waitFor();
    }
    await page.getByText('Start a run to watch its events').waitFor();
  });

  test('sequential: an agent card per step, then the final output', async () => {
    await startRun({ pattern: 'sequential', agents: ['demo_researcher', 'demo_writer'], task: 'Write about tides' });
    await result().getByText('completed').first().waitFor();
    const cards = timeline().locator('article.card');
    assert.equal(await cards.count(), 2);
    assert.equal(await cards.nth(0).getAttribute('data-agent'), 'demo_researcher');
    assert.equal(await cards.nth(1).getAttribute('data-agent'), 'demo_writer');
    await cards.nth(0).getByText("Research notes on 'Write about tides'").waitFor();
    await result()
      .locator('.output-text')
      .getByText("Draft: a short article built from: Research notes on 'Write about tides'")
      .waitFor();
    await shot('run-sequential');
  });

  test('concurrent: every agent runs and the summarizer writes the result', async () => {
    await startRun({
      pattern: 'concurrent',
      agents: ['demo_researcher', 'demo_writer'],
      task: 'Tides',
      options: { aggregator: 'agent', summarizer: 'demo_summarizer' },
    });
    await result().locator('.output-text').getByText('Summary of 2 answers: demo_researcher said').waitFor();
    const agents = await timeline().locator('article.card').evaluateAll((cs) => cs.map((c) => c.dataset.agent));
    assert.deepEqual(agents.sort(), ['demo_researcher', 'demo_summarizer', 'demo_writer']);
    await page.getByLabel('one lane per agent').check();
    const lanes = page.locator('.lanes .lane');
    await lanes.nth(2).waitFor();
    assert.deepEqual(
      (await lanes.locator('h4').allInnerTexts()).sort(),
      ['demo_researcher', 'demo_summarizer', 'demo_writer'],
    );
    await shot('run-concurrent-lanes');
  });

  test('handoff: the arrow from triage to billing and billing\'s answer', async () => {
    await startRun({ pattern: 'handoff', agents: ['demo_triage', 'demo_billing'], task: 'Where is my refund?' });
    const arrow = timeline().locator('[data-kind=handoff]');
    await arrow.getByText('demo_triage → demo_billing').waitFor();
    await arrow.getByText('the customer asks about billing').waitFor();
    await result().locator('.output-text').getByText('the refund was approved').waitFor();
    await shot('run-handoff');
  });

  test('group chat: speaker turns and the termination reason', async () => {
    await page.goto(server.url('/ui'));
    await page.getByLabel('Pattern').selectOption('group_chat');
    await page.getByRole('button', { name: 'Example' }).click();
    assert.equal(await page.getByLabel('Task').inputValue(), 'A slogan for a bakery');
    await page.getByRole('button', { name: 'Start run' }).click();
    const turns = timeline().locator('[data-kind=speaker]');
    await turns.nth(1).waitFor();
    assert.match(await turns.nth(0).innerText(), /round 0\s+demo_writer speaks/i);
    assert.match(await turns.nth(1).innerText(), /round 1\s+demo_critic speaks/i);
    await result().locator('.termination').getByText('text_mention: APPROVED').waitFor();
    await result().locator('.output-text').getByText('APPROVED. The draft is clear and on topic.').waitFor();
    await shot('run-group-chat');
  });

  test('dynamic: the plan and its rationale, the replan after a failure, the ledger', async () => {
    await startRun({ pattern: 'dynamic', task: 'Search for tides, then write an article', options: { max_stalls: 2 } });
    const plan = page.locator('section.plan');
    await plan.getByText('heuristic planner').waitFor();
    await plan.locator('.rationale').getByText("chose single agent 'demo_writer'").waitFor();
    await plan.getByText('excluded after failures: [flaky_search]').waitFor();
    await timeline().locator('[data-kind=plan]').getByText('sequential [flaky_search → demo_writer]').waitFor();
    await timeline().locator('[data-kind=plan]').getByText('step 1 failed').waitFor();
    const ledger = result().locator('section.ledger');
    await ledger.getByText('2 done').waitFor();
    await ledger.getByText("agent 'flaky_search' failed").waitFor();
    await result().getByText('completed').first().waitFor();
    await shot('run-dynamic');
  });

  test('retries and fallbacks show in the failing agent\'s card and as an arrow', async () => {
    await startRun({
      pattern: 'sequential',
      agents: ['flaky_search', 'demo_writer'],
      task: 'Tides',
      options: { retry: { max_retries: 1, initial_backoff_ms: 10 }, fallbacks: { flaky_search: ['demo_researcher'] } },
    });
    const flaky = timeline().locator('article.card[data-agent=flaky_search]');
    await flaky.locator('.note-failed').first().getByText('attempt 1 failed: agent_unreachable').waitFor();
    await flaky.locator('.note-retry').getByText('retry: attempt 2').waitFor();
    await timeline().locator('[data-kind=fallback]').getByText('flaky_search ⇢ demo_researcher').waitFor();
    await result().locator('.output-text').getByText("Draft: a short article built from: Research notes on 'Tides'").waitFor();
    await result().locator('table.steps').getByText('for flaky_search').waitFor();
    await shot('run-retry-fallback');
  });

  test('an invalid request shows the server\'s error and starts nothing', async () => {
    await startRun({ pattern: 'sequential', agents: ['demo_writer'], task: 'x', options: { aggregator: 'nope' } });
    await page.locator('.banner').getByText('invalid_options').waitFor();
  });

  test('a bad options field is caught before sending', async () => {
    await page.goto(server.url('/ui'));
    await page.getByLabel('Options').fill('{not json');
    await page.getByText('options are not valid JSON').first().waitFor();
  });
});

describe('sessions view', () => {
  test('lists sessions, opens one with its conversation and runs, and deletes it', async () => {
    await startRun({ pattern: 'handoff', agents: ['demo_triage', 'demo_billing'], task: 'Where is my invoice?' });
    await result().waitFor();
    const sessionId = await page.locator('.run-head .ids a').innerText();
    await page.getByRole('link', { name: 'Sessions' }).click();
    const row = page.locator('.sessions-table tr', { hasText: sessionId });
    await row.waitFor();
    await shot('sessions');
    await row.getByRole('link', { name: sessionId }).click();
    await page.waitForURL(`**/ui/sessions/${sessionId}`);
    const conversation = page.locator('section.conversation');
    await conversation.locator('.msg-user').getByText('Where is my invoice?').waitFor();
    await conversation.locator('.msg-assistant').getByText('Demo billing').waitFor();
    const run = page.locator('details.run-record');
    await run.getByText('handoff').first().waitFor();
    await run.locator('table.steps').getByText('→ demo_billing').waitFor();
    await shot('session-detail');

    // A reload lands on the same view (the server answers every /ui path).
    await page.reload();
    await conversation.locator('.msg-user').getByText('Where is my invoice?').waitFor();

    await page.getByRole('button', { name: 'Delete session' }).click();
    await page.getByRole('button', { name: 'Yes, delete' }).click();
    await page.locator('.deleted-note').waitFor();
    const res = await fetch(server.url(`/sessions/${sessionId}`));
    assert.equal(res.status, 404);
    await page.getByRole('link', { name: '← all sessions' }).click();
    await page.locator('.sessions-table, .sessions p.muted').first().waitFor();
    assert.equal(await page.locator('.sessions-table tr', { hasText: sessionId }).count(), 0);
  });

  test('an unknown session says so', async () => {
    await page.goto(server.url('/ui/sessions/no-such-session'));
    await page.getByText('The server has no session').waitFor();
  });
});

describe('runs view', () => {
  test('on the memory store, the Runs view opens (runs that wait are in e2e/input.test.mjs)', async () => {
    await page.goto(server.url('/ui/runs'));
    await page.locator('.waiting-list').getByText('No run waits for input').waitFor();
    assert.equal(await page.getByText('Runs are not available on this server.').count(), 0);
  });

  test('on a server without GET /runs/{run_id}, says runs are not available', async () => {
    // An older server: the router's generic 404 for every /runs path.
    const apiRuns = (url) => url.pathname.startsWith('/runs/');
    await page.route(apiRuns, (route) =>
      route.fulfill({
        status: 404,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ error: { code: 'not_found', message: 'no such route' } }),
      }),
    );
    try {
      await page.goto(server.url('/ui/runs'));
      await page.getByText('Runs are not available on this server.').waitFor();
      assert.equal(await page.locator('form[aria-label="Answer the input request"]').count(), 0);
      await shot('runs-unavailable');
    } finally {
      await page.unroute(apiRuns);
    }
  });
});

describe('stream rendering', () => {
  // No built-in agent streams tokens, so this test replays a recorded
  // stream (the server's exact SSE framing, split at awkward places) to
  // check that agent_delta tokens are appended into the agent's card.
  test('agent_delta tokens are appended into the agent card as they arrive', async () => {
    const env = { schema_version: 1, run_id: 'r-1', session_id: 's-1', timestamp: '2026-01-01T00:00:00Z' };
    const events = [
      { type: 'run_started', pattern: 'sequential', task: 'Stream it', agents: ['writer_llm'] },
      { type: 'agent_started', agent: 'writer_llm', step: 0, input: 'Stream it' },
      { type: 'agent_delta', agent: 'writer_llm', step: 0, delta: 'Tides rise' },
      { type: 'agent_delta', agent: 'writer_llm', step: 0, delta: ' and fall' },
      { type: 'agent_delta', agent: 'writer_llm', step: 0, delta: ' twice a day.' },
    ].map((e, i) => ({ ...env, seq: i + 1, ...e }));
    const sse = events.map((e) => `event: ${e.type}\r\nid: ${e.seq}\r\ndata: ${JSON.stringify(e)}\r\n\r\n`).join('') + ': keep-alive\n\n';
    await page.route('**/orchestrate/stream', (route) =>
      route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: sse }),
    );
    try {
      await startRun({ pattern: 'sequential', agents: ['demo_writer'], task: 'Stream it' });
      const card = timeline().locator('article.card[data-agent=writer_llm]');
      await card.locator('.card-text').getByText('Tides rise and fall twice a day.').waitFor();
      await card.getByText('3 streamed chunks').waitFor();
      await page.locator('.banner').getByText('The stream ended before the run finished.').waitFor();
    } finally {
      await page.unroute('**/orchestrate/stream');
    }
  });

  test('no uncaught page errors', () => {
    assert.deepEqual(browser.errors, []);
  });
});

void TIMEOUT;
