import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Orchestrator, Handoff, PATTERNS } from '../index.mjs'
import { withAgents } from './helpers.mjs'

test('the five patterns are listed', () => {
  assert.deepEqual(PATTERNS, ['sequential', 'concurrent', 'handoff', 'group_chat', 'dynamic'])
  assert.deepEqual(Orchestrator.patterns, PATTERNS)
})

test('agents are listed in registration order, replaced by name and removed', async () => {
  const orch = withAgents()
  assert.deepEqual(orch.agents(), [
    { name: 'researcher', description: 'finds facts and sources' },
    { name: 'writer', description: 'writes prose and articles' },
    { name: 'critic', description: 'reviews drafts' },
  ])
  orch.addAgent('writer', () => 'new writer', { description: 'v2' })
  assert.equal(orch.agents()[1].description, 'v2')
  assert.equal((await orch.run('sequential', 'x', { agents: ['writer'] })).output, 'new writer')
  assert.equal(orch.removeAgent('writer'), true)
  assert.equal(orch.removeAgent('writer'), false)
  await assert.rejects(orch.run('sequential', 'x', { agents: ['writer'] }), (e) => e.code === 'unknown_agent')
  assert.throws(() => orch.addAgent('', () => 'x'), TypeError)
  assert.throws(() => orch.addAgent('y', 'not a function'), TypeError)
})

test('sequential passes each output on, with sync and async agents', async () => {
  const orch = withAgents()
  const r = await orch.run('sequential', 'tides', { agents: ['researcher', 'writer'], options: { timeoutMs: 30000 } })
  assert.equal(r.status, 'completed')
  assert.equal(r.output, 'article from facts about tides')
  assert.equal(r.steps.length, 2)
  assert.deepEqual(r.steps.map((s) => s.agent), ['researcher', 'writer'])
  assert.equal(r.steps[1].input, 'facts about tides')
  assert.match(r.runId, /^[0-9a-f-]{36}$/)
  assert.match(r.sessionId, /^[0-9a-f-]{36}$/)
  assert.equal(r.pattern, 'sequential')
  assert.equal(r.error, undefined)
  assert.equal(typeof r.durationMs, 'number')
  assert.deepEqual(r.usage, { promptTokens: 0, completionTokens: 0, totalTokens: 0 })
})

test('an agent sees task, messages, ids, metadata and state', async () => {
  const orch = new Orchestrator()
  let seen
  orch.addAgent('probe', (input) => {
    seen = input
    return 'ok'
  })
  const r = await orch.run('sequential', 'look', {
    agents: ['probe'],
    sessionId: 'probe-session-1',
    metadata: { user_id: 7, someKey: { nested_key: true } },
  })
  assert.equal(seen.task, 'look')
  assert.equal(seen.sessionId, 'probe-session-1')
  assert.equal(seen.runId, r.runId)
  // metadata is user data: keys arrive exactly as given
  assert.deepEqual(seen.metadata, { user_id: 7, someKey: { nested_key: true } })
  assert.deepEqual(seen.state, {})
  assert.equal(seen.messages.length, 1)
  assert.equal(seen.messages[0].role, 'user')
  assert.equal(seen.messages[0].content, 'look')
  assert.equal(typeof seen.messages[0].createdAt, 'string')
})

test('concurrent runs all agents at once and aggregates', async () => {
  const orch = withAgents()
  let inFlight = 0
  let peak = 0
  // Each agent waits until all three are in flight (or 10 s pass, which
  // only happens if they were not called together): no timing luck needed.
  let allIn
  const together = new Promise((resolve) => { allIn = resolve })
  for (const name of ['a', 'b', 'c']) {
    orch.addAgent(name, async () => {
      inFlight++
      peak = Math.max(peak, inFlight)
      if (inFlight === 3) allIn()
      let timer
      await Promise.race([together, new Promise((r) => { timer = setTimeout(r, 10_000) })])
      clearTimeout(timer)
      inFlight--
      return `answer ${name}`
    })
  }
  const merged = await orch.run('concurrent', 'compare', { agents: ['a', 'b', 'c'], options: { aggregator: 'merge' } })
  assert.equal(merged.status, 'completed')
  for (const name of ['a', 'b', 'c']) assert.ok(merged.output.includes(`answer ${name}`), merged.output)
  assert.equal(peak, 3, 'all three agents were in flight together')

  orch.addAgent('same1', () => 'yes')
  orch.addAgent('same2', () => 'yes')
  orch.addAgent('other', () => 'no')
  const vote = await orch.run('concurrent', 'decide', { agents: ['same1', 'other', 'same2'], options: { aggregator: 'vote' } })
  assert.equal(vote.output, 'yes')
})

test('handoff follows a Handoff returned by an agent', async () => {
  const orch = new Orchestrator()
  orch.addAgent('triage', () => new Handoff('billing', 'a refund question'), { description: 'routes' })
  orch.addAgent('billing', async (input) => `refund handled: ${input.task}`, { description: 'refunds' })
  const r = await orch.run('handoff', 'I want my money back', { agents: ['triage', 'billing'] })
  assert.equal(r.status, 'completed')
  assert.equal(r.output, 'refund handled: I want my money back')
  assert.deepEqual(r.steps.map((s) => s.agent), ['triage', 'billing'])
  assert.deepEqual(r.steps[0].output.handoff, { to: 'billing', reason: 'a refund question' })
})

test('handoff also accepts an object with a handoff field, and routes restrict it', async () => {
  const orch = new Orchestrator()
  orch.addAgent('front', () => ({ content: 'passing on', handoff: { to: 'back', reason: 'needs back office' } }))
  orch.addAgent('back', () => 'done at the back')
  const ok = await orch.run('handoff', 'help', { agents: ['front', 'back'] })
  assert.equal(ok.output, 'done at the back')
  const blocked = await orch.run('handoff', 'help', { agents: ['front', 'back'], options: { routes: { front: [] } } })
  assert.equal(blocked.status, 'failed')
  assert.equal(blocked.error.code, 'invalid_handoff')
})

test('group chat with round robin stops on a text mention', async () => {
  const orch = withAgents()
  const r = await orch.run('group_chat', 'Write a slogan', {
    agents: ['writer', 'critic'],
    options: { maxRounds: 6, termination: { textMention: 'APPROVED' } },
  })
  assert.equal(r.status, 'completed')
  assert.equal(r.steps.length, 2)
  assert.equal(r.termination, 'text_mention: APPROVED')
  assert.equal(r.output, 'APPROVED')
})

test('group chat stops at maxRounds', async () => {
  const orch = withAgents()
  const r = await orch.run('group_chat', 'chat', { agents: ['writer', 'researcher'], options: { maxRounds: 3 } })
  assert.equal(r.steps.length, 3)
  assert.equal(r.termination, 'max_rounds: 3')
})

test('a custom manager function picks speakers and ends the chat', async () => {
  const orch = withAgents()
  const seen = []
  orch.addManager('critic-last', (chat) => {
    seen.push(chat.round)
    assert.equal(chat.task, 'debate')
    assert.deepEqual(chat.participants.map((p) => p.name), ['writer', 'critic'])
    if (chat.round === 0) return 'writer'
    if (chat.round === 1) return { agent: 'critic', reason: 'review time' }
    return null
  })
  const events = []
  for await (const ev of orch.stream('group_chat', 'debate', { agents: ['writer', 'critic'], options: { manager: 'critic-last' } })) {
    events.push(ev)
  }
  const picks = events.filter((e) => e.type === 'speaker_selected')
  assert.deepEqual(picks.map((e) => e.agent), ['writer', 'critic'])
  assert.equal(picks[1].reason, 'review time')
  const result = events.at(-1).result
  assert.equal(result.termination, 'manager ended the chat')
  assert.deepEqual(seen, [0, 1, 2])
})

test('a custom manager object can terminate and filter the result', async () => {
  const orch = withAgents()
  orch.addManager('editor', {
    selectNext: async (chat) => (chat.round % 2 === 0 ? 'writer' : 'critic'),
    shouldTerminate: (chat) => (chat.transcript.length >= 3 ? 'three messages' : null),
    filterResult: (chat) => chat.transcript.map((m) => m.name).join(','),
  })
  const r = await orch.run('group_chat', 'go', { agents: ['writer', 'critic'], options: { manager: 'editor', maxRounds: 10 } })
  assert.equal(r.status, 'completed')
  assert.equal(r.termination, 'three messages')
  assert.equal(r.output, 'writer,critic,writer')
})

test('a manager that throws fails the run with manager_failed', async () => {
  const orch = withAgents()
  orch.addManager('broken', () => {
    throw new Error('no idea who speaks')
  })
  const r = await orch.run('group_chat', 'go', { agents: ['writer'], options: { manager: 'broken' } })
  assert.equal(r.status, 'failed')
  assert.equal(r.error.code, 'manager_failed')
  assert.match(r.error.message, /no idea who speaks/)
})

test('dynamic with the heuristic planner chains matching agents', async () => {
  const orch = withAgents()
  orch.addAgent('chef', () => 'soup', { description: 'cooks recipes' })
  const events = []
  for await (const ev of orch.stream('dynamic', 'Find facts about tides, then write an article')) events.push(ev)
  const plan = events.find((e) => e.type === 'plan_created').plan
  assert.equal(plan.steps[0].pattern, 'sequential')
  assert.deepEqual(plan.steps[0].agents, ['researcher', 'writer'])
  const result = events.at(-1).result
  assert.equal(result.status, 'completed')
  assert.ok(!result.steps.some((s) => s.agent === 'chef'))
})

test('a custom planner writes the plan, in camelCase, and is asked to replan', async () => {
  const orch = withAgents()
  let fail = true
  orch.addAgent('flaky', () => {
    if (fail) {
      fail = false
      throw new Error('first try fails')
    }
    return 'recovered'
  })
  const requests = []
  orch.addPlanner('mine', async (request) => {
    requests.push(request)
    if (!request.ledger) {
      return { steps: [{ pattern: 'sequential', agents: ['flaky'], task: request.task }], rationale: 'try flaky' }
    }
    return {
      steps: [
        { pattern: 'concurrent', agents: ['researcher', 'writer'], task: 'both', options: { aggregator: 'merge', maxConcurrency: 2 } },
      ],
      rationale: 'replanned after ' + request.ledger.done[0].failedAgents.join(','),
    }
  })
  const events = []
  for await (const ev of orch.stream('dynamic', 'anything', { agents: ['flaky', 'researcher', 'writer'], options: { planner: 'mine', maxStalls: 3 } })) {
    events.push(ev)
  }
  const created = events.find((e) => e.type === 'plan_created')
  assert.equal(created.plan.planner, 'mine')
  assert.equal(created.plan.rationale, 'try flaky')
  const updated = events.find((e) => e.type === 'plan_updated')
  assert.ok(updated, 'the planner was asked to replan')
  assert.equal(updated.plan.rationale, 'replanned after flaky')
  assert.equal(updated.plan.steps[0].options.maxConcurrency, 2)
  assert.equal(requests.length, 2)
  assert.deepEqual(requests[0].agents.map((a) => a.name), ['flaky', 'researcher', 'writer'])
  assert.equal(typeof requests[1].ledger.stalls, 'number')
  const result = events.at(-1).result
  assert.equal(result.status, 'completed')
  assert.match(result.output, /facts about both/)
})
