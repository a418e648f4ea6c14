// Runs that wait for a person, end to end: the real orchestra-server (memory
// store, demo agents, a `kind = "human"` participant, and one HTTP agent on
// loopback that asks "How many?" with an integer schema) and headless
// Chromium. A run started from the page pauses; its question shows with a
// form; a refused answer shows the server's error; approve and deny buttons
// answer approvals and plans; the Runs view lists waiting runs, answers them
// and cancels them.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, screenshotsDir, startServer } from './harness.mjs';

let server;
let browser;
let page;
let agent;

/**
 * An HTTP agent (docs/agent-protocol.md) that asks a person for a number, then
 * says what it heard (after 10 s when it heard 99, for a run to stop mid-call).
 */
function startAskingAgent() {
  return new Promise((ok) => {
    const http = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const call = JSON.parse(body || '{}');
        const reply =
          call.answer === undefined
            ? { input_required: { prompt: 'How many copies?', schema: { type: 'integer', minimum: 1 }, context: { task: call.task } } }
            : { content: `heard ${JSON.stringify(call.answer)}` };
        const send = () => {
          if (res.destroyed) return;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(reply));
        };
        if (call.answer === 99) setTimeout(send, 10_000).unref();
        else send();
      });
    });
    http.listen(0, '127.0.0.1', () => ok(http));
  });
}

async function shot(name) {
  mkdirSync(screenshotsDir, { recursive: true });
  await page.screenshot({ path: join(screenshotsDir, `${name}.png`), fullPage: true });
}

async function startRun({ pattern, agents = [], task, options }) {
  await page.goto(server.url('/ui'));
  await page.getByLabel('Pattern').selectOption(pattern);
  for (const a of agents) await page.locator(`input[name=agents][value="${a}"]`).check();
  await page.getByLabel('Task').fill(task);
  if (options) await page.getByLabel('Options').fill(JSON.stringify(options));
  await page.getByRole('button', { name: 'Start run' }).click();
}

/** Starts a run through the API (sync POST /orchestrate), which answers when it pauses. */
async function pausedRun(body) {
  const res = await fetch(server.url('/orchestrate'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const run = await res.json();
  assert.equal(res.status, 200, JSON.stringify(run));
  assert.equal(run.status, 'waiting_for_input', JSON.stringify(run));
  return run;
}

async function runStatus(runId) {
  const res = await fetch(server.url(`/runs/${runId}`));
  return (await res.json()).status;
}

const question = () => page.locator('section.input-request');
const result = () => page.locator('section.result');

before(async () => {
  agent = await startAskingAgent();
  const { port } = agent.address();
  server = await startServer(`demo_agents = true

[[agents]]
name = "counter"
kind = "http"
description = "Asks a person how many copies to make"
url = "http://127.0.0.1:${port}/invoke"

[[agents]]
name = "editor"
kind = "human"
description = "A person who edits the draft"
`);
  browser = await launchBrowser();
  page = await browser.context.newPage();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  agent?.closeAllConnections();
  await new Promise((ok) => (agent ? agent.close(ok) : ok()));
});

describe('run view: a run that pauses', () => {
  test('an agent\'s question: a refused answer shows the error, a number resumes the run to its result', async () => {
    await startRun({ pattern: 'sequential', agents: ['demo_researcher', 'counter', 'demo_writer'], task: 'Print the leaflet' });
    await question().locator('.prompt').getByText('How many copies?').waitFor();
    await question().locator('.input-kind').getByText('agent').waitFor();
    await question().locator('.input-facts').getByText('counter').waitFor();
    await page.locator('.run-head').getByText('waiting for input').waitFor();
    await page.locator('.timeline [data-kind=input_requested]').getByText('How many copies?').waitFor();
    assert.equal(await result().count(), 0);

    // Not a number: the server refuses it (422 invalid_answer) and the run keeps waiting.
    await question().getByRole('textbox', { name: /^Answer/ }).fill('many');
    await question().getByRole('button', { name: 'Send answer' }).click();
    await question().locator('.answer-error').getByText('invalid_answer').waitFor();
    const runId = await question().getAttribute('data-run');
    assert.equal(await runStatus(runId), 'waiting_for_input');
    await shot('input-answer');

    await question().getByRole('textbox', { name: /^Answer/ }).fill('3');
    await question().getByRole('button', { name: 'Send answer' }).click();
    await result().getByText('completed').first().waitFor();
    await result().locator('.output-text').getByText('heard 3').waitFor();
    assert.equal(await question().count(), 0);
    assert.equal(await runStatus(runId), 'completed');
  });

  test('Stop while an answered run goes on cancels it on the server', async () => {
    await startRun({ pattern: 'sequential', agents: ['counter'], task: 'A slow count' });
    await question().locator('.prompt').getByText('How many copies?').waitFor();
    const runId = await question().getAttribute('data-run');
    await question().getByRole('textbox', { name: /^Answer/ }).fill('99');
    await question().getByRole('button', { name: 'Send answer' }).click();
    await page.locator('.run-head').getByText('running').waitFor();
    await page.getByRole('button', { name: 'Stop' }).click();
    await page.locator('.banner').getByText('Stopped: the run was cancelled on the server.').waitFor();
    const deadline = Date.now() + 10_000;
    while ((await runStatus(runId)) !== 'cancelled') {
      assert.ok(Date.now() < deadline, `run ${runId} was not cancelled`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
  });

  test('a human participant of a group chat answers with text', async () => {
    await startRun({ pattern: 'group_chat', agents: ['demo_writer', 'editor'], task: 'A slogan for a bakery', options: { max_rounds: 2 } });
    await question().locator('.input-kind').getByText('human').waitFor();
    await question().locator('.input-context').getByText('last message').waitFor();
    await question().getByRole('textbox', { name: /^Answer/ }).fill('Shorter, please');
    await question().getByRole('button', { name: 'Send answer' }).click();
    await result().getByText('completed').first().waitFor();
    await result().locator('table.steps').getByText('Shorter, please').waitFor();
  });

  test('approving an agent lets it act; denying fails the run', async () => {
    await startRun({
      pattern: 'sequential',
      agents: ['demo_researcher', 'demo_writer'],
      task: 'Write about tides',
      options: { approve_agents: ['demo_writer'] },
    });
    await question().getByText('Approve this agent?').waitFor();
    await question().locator('.prompt').getByText("Approve 'demo_writer'").waitFor();
    await question().getByRole('button', { name: 'Approve' }).click();
    await result().locator('.output-text').getByText('Draft: a short article').waitFor();

    await startRun({
      pattern: 'sequential',
      agents: ['demo_researcher', 'demo_writer'],
      task: 'Write about waves',
      options: { approve_agents: ['demo_writer'] },
    });
    await question().getByLabel('Reason').fill('not today');
    await question().getByRole('button', { name: 'Deny' }).click();
    await result().getByText('failed').first().waitFor();
    await result().getByText('approval_denied').first().waitFor();
  });

  test('a dynamic run shows the plan to approve, and runs it once approved', async () => {
    await startRun({ pattern: 'dynamic', task: 'Research tides, then write an article', options: { approve_plan: true } });
    await question().getByText('Approve the plan?').waitFor();
    await question().locator('section.plan .plan-steps li').first().waitFor();
    await question().locator('section.plan .rationale').first().waitFor();
    await shot('input-plan');
    await question().getByRole('button', { name: 'Approve' }).click();
    await result().getByText('completed').first().waitFor();
    assert.equal(await question().count(), 0);
  });
});

describe('runs view', () => {
  test('lists waiting runs with their question; answers one and follows it; cancels another', async () => {
    const toAnswer = await pausedRun({ pattern: 'sequential', agents: ['counter', 'demo_writer'], task: 'Copies for the fair' });
    const toCancel = await pausedRun({
      pattern: 'sequential',
      agents: ['demo_writer'],
      task: 'Copies for the market',
      options: { approve_agents: ['demo_writer'] },
    });
    await page.goto(server.url('/ui/runs'));
    const answerRow = page.locator(`.waiting-run[data-run="${toAnswer.run_id}"]`);
    const cancelRow = page.locator(`.waiting-run[data-run="${toCancel.run_id}"]`);
    await answerRow.locator('.prompt').getByText('How many copies?').waitFor();
    await cancelRow.getByText('Approve this agent?').waitFor();
    await shot('runs-waiting');

    await cancelRow.getByRole('button', { name: 'Cancel run' }).click();
    await cancelRow.waitFor({ state: 'detached' });
    assert.equal(await runStatus(toCancel.run_id), 'cancelled');

    await answerRow.getByRole('textbox', { name: /^Answer/ }).fill('2.5');
    await answerRow.getByRole('button', { name: 'Send answer' }).click();
    await answerRow.locator('.answer-error').getByText('invalid_answer').waitFor();
    await answerRow.getByRole('textbox', { name: /^Answer/ }).fill('12');
    await answerRow.getByRole('button', { name: 'Send answer' }).click();
    await page.waitForURL(`**/ui/runs/${toAnswer.run_id}`);
    const detail = page.locator('.run-detail');
    await detail.locator('section.result .output-text').getByText('heard 12').waitFor();
    assert.equal(await runStatus(toAnswer.run_id), 'completed');
    await page.locator('.waiting-list').getByText('No run waits for input').waitFor();
  });

  test('a waiting run opened by id shows its question and answers it', async () => {
    const run = await pausedRun({ pattern: 'dynamic', task: 'Write about the moon', options: { approve_plan: true } });
    await page.goto(server.url(`/ui/runs/${run.run_id}`));
    const detail = page.locator('.run-detail');
    await detail.locator('section.input-request section.plan').waitFor();
    await detail.getByRole('button', { name: 'Approve' }).click();
    await detail.locator('section.result').getByText('completed').first().waitFor();
  });

  test('no uncaught page errors', () => {
    assert.deepEqual(browser.errors, []);
  });
});
