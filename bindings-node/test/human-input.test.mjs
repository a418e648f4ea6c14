// Runs that pause for a person and resume with the answer, in every pattern.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  Orchestrator,
  Handoff,
  InputRequired,
  InvalidAnswerError,
  InvalidRequestError,
  InputExpiredError,
  TimeoutError,
  ApprovalDeniedError,
  RunNotFoundError,
  RunStateError,
  OrchestraError,
} from '../index.mjs'
import { collect } from './helpers.mjs'

function counter() {
  const calls = {}
  return {
    hit: (name) => {
      calls[name] = (calls[name] ?? 0) + 1
    },
    get: (name) => calls[name] ?? 0,
  }
}

function addCounted(orch, name, n) {
  orch.addAgent(
    name,
    (input) => {
      n.hit(name)
      return `${name}(${input.task})`
    },
    { description: `${name} agent` },
  )
}

/** An agent that asks for an integer, then answers with it. */
function addAsker(orch, name, n, { thrown = true } = {}) {
  orch.addAgent(
    name,
    async (input) => {
      n.hit(name)
      if (input.answer === undefined) {
        const q = new InputRequired('How many?', { schema: { type: 'integer' }, context: { asked_by: name } })
        if (thrown) throw q
        return q
      }
      return `${name} heard ${input.answer}`
    },
    { description: `${name} asks a person` },
  )
}

test('sequential pauses for input and resumes without re-running steps', async () => {
  const orch = new Orchestrator()
  const n = counter()
  addCounted(orch, 'a', n)
  addAsker(orch, 'ask', n)
  addCounted(orch, 'c', n)
  const paused = await orch.run('sequential', 'count', { agents: ['a', 'ask', 'c'], throwOnFailure: true })
  assert.equal(paused.status, 'waiting_for_input')
  const q = paused.input
  assert.deepEqual([q.key, q.kind, q.agent, q.step, q.prompt], ['step:1', 'agent', 'ask', 1, 'How many?'])
  assert.deepEqual(q.schema, { type: 'integer' })
  assert.deepEqual(q.context, { asked_by: 'ask' }, 'user data keeps its keys')
  assert.ok(q.requestedAt)
  assert.equal(paused.steps.length, 1)
  assert.equal(n.get('c'), 0)

  const stored = await orch.getRun(paused.runId)
  assert.equal(stored.status, 'waiting_for_input')
  assert.equal(stored.input.key, 'step:1')

  const done = await orch.resume(paused.runId, 7)
  assert.equal(done.status, 'completed', JSON.stringify(done.error))
  assert.equal(done.output, 'c(ask heard 7)')
  assert.equal(done.steps.length, 3)
  assert.deepEqual(done.answers, { 'step:1': 7 })
  assert.equal(done.checkpoint.resumes, 1)
  assert.deepEqual([n.get('a'), n.get('ask'), n.get('c')], [1, 2, 1])
  const session = await orch.getSession(done.sessionId)
  assert.equal(session.messages.length, 4)
})

test('concurrent waits for the other branches, then resumes', async () => {
  const orch = new Orchestrator()
  const n = counter()
  addCounted(orch, 'a', n)
  addAsker(orch, 'ask', n, { thrown: false })
  addCounted(orch, 'c', n)
  const paused = await orch.run('concurrent', 't', { agents: ['a', 'ask', 'c'] })
  assert.equal(paused.status, 'waiting_for_input')
  assert.equal(paused.steps.length, 2, 'the other branches are recorded')
  const done = await orch.resume(paused.runId, 5)
  assert.equal(done.status, 'completed', JSON.stringify(done.error))
  assert.match(done.output, /ask heard 5/)
  assert.deepEqual([n.get('a'), n.get('ask'), n.get('c')], [1, 2, 1])
})

test('handoff to an agent that asks resumes as a stream', async () => {
  const orch = new Orchestrator()
  const n = counter()
  orch.addAgent('triage', () => {
    n.hit('triage')
    return new Handoff('ask', 'needs a number')
  })
  addAsker(orch, 'ask', n)
  const paused = await orch.run('handoff', 't', { agents: ['triage', 'ask'] })
  assert.equal(paused.status, 'waiting_for_input')
  assert.equal(paused.input.agent, 'ask')
  const events = await collect(orch.resumeStream(paused.runId, 9))
  assert.equal(events[0].type, 'run_resumed')
  assert.equal(events[0].recordedSteps, 1)
  assert.equal(events[0].answered, 'step:1')
  assert.equal(events.at(-1).type, 'run_completed')
  assert.equal(events.at(-1).result.output, 'ask heard 9')
  assert.deepEqual([n.get('triage'), n.get('ask')], [1, 2])
})

test('group chat with a human participant', async () => {
  const orch = new Orchestrator()
  const n = counter()
  addCounted(orch, 'writer', n)
  orch.addHuman('editor', { description: 'the editor', prompt: 'Your notes on the draft?' })
  const order = ['writer', 'editor', 'writer']
  const asked = []
  orch.addManager('script', (chat) => {
    asked.push(chat.round)
    return order[chat.round] ?? null
  })
  const options = { manager: 'script', maxRounds: 3 }
  const events = await collect(orch.stream('group_chat', 'draft', { agents: ['writer', 'editor'], options }))
  const last = events.at(-1)
  assert.equal(last.type, 'input_requested')
  assert.deepEqual([last.request.kind, last.request.agent, last.request.prompt], ['human', 'editor', 'Your notes on the draft?'])
  assert.equal(last.request.context.last_message.name, 'writer')
  assert.equal(last.result.status, 'waiting_for_input')

  await assert.rejects(orch.resume(last.result.runId, ''), (e) => {
    assert.ok(e instanceof InvalidAnswerError && e instanceof InvalidRequestError)
    assert.equal(e.code, 'invalid_answer')
    return true
  })
  const resumed = await collect(orch.resumeStream(last.result.runId, { content: 'tighten the intro', data: { tone_of_voice: 'dry' } }))
  const kinds = resumed.map((e) => e.type)
  assert.equal(kinds[0], 'run_resumed')
  assert.equal(kinds.at(-1), 'run_completed')
  assert.equal(kinds.filter((k) => k === 'agent_started').length, 2, kinds.join(' '))
  const done = resumed.at(-1).result
  assert.equal(done.status, 'completed')
  assert.equal(done.steps[1].agent, 'editor')
  assert.equal(done.steps[1].output.content, 'tighten the intro')
  assert.deepEqual(done.steps[1].output.data, { tone_of_voice: 'dry' })
  assert.equal(n.get('writer'), 2)
  assert.deepEqual(asked, [0, 1, 2], 'rounds 0 and 1 come from the record')
})

test('dynamic plans wait for approval', async () => {
  const orch = new Orchestrator()
  const n = counter()
  addCounted(orch, 'researcher', n)
  const opts = { agents: ['researcher'], options: { approvePlan: true } }
  const paused = await orch.run('dynamic', 'research tides', opts)
  assert.deepEqual([paused.input.kind, paused.input.key], ['plan', 'approve_plan:0'])
  assert.ok(Array.isArray(paused.input.context.plan.steps))
  assert.equal(n.get('researcher'), 0)
  const done = await orch.resume(paused.runId, { approved: true })
  assert.equal(done.status, 'completed', JSON.stringify(done.error))
  assert.equal(n.get('researcher'), 1)

  const again = await orch.run('dynamic', 'research tides', opts)
  const denied = await orch.resume(again.runId, { approved: false, reason: 'too broad' })
  assert.equal(denied.status, 'failed')
  assert.equal(denied.error.code, 'approval_denied')
  assert.match(denied.error.message, /too broad/)
  assert.equal(n.get('researcher'), 1)
})

test('named agents act only after approval', async () => {
  const orch = new Orchestrator()
  const n = counter()
  addCounted(orch, 'a', n)
  addCounted(orch, 'b', n)
  const opts = { agents: ['a', 'b'], options: { approveAgents: ['b'] } }
  const paused = await orch.run('sequential', 't', opts)
  assert.deepEqual([paused.input.kind, paused.input.agent], ['approval', 'b'])
  assert.equal(n.get('b'), 0)
  const done = await orch.resume(paused.runId, true)
  assert.equal(done.output, 'b(a(t))')
  assert.equal(n.get('b'), 1)

  const again = await orch.run('sequential', 't', opts)
  await assert.rejects(orch.resume(again.runId, false, { throwOnFailure: true }), (e) => {
    assert.ok(e instanceof ApprovalDeniedError)
    assert.equal(e.result.status, 'failed')
    return true
  })
  const record = await orch.getRun(again.runId)
  assert.equal(record.error.code, 'approval_denied')
  assert.equal(n.get('b'), 1)
})

test('a bad answer is refused with InvalidAnswerError and the run keeps waiting', async () => {
  const orch = new Orchestrator()
  const n = counter()
  addAsker(orch, 'ask', n)
  const paused = await orch.run('sequential', 't', { agents: ['ask'] })
  await assert.rejects(orch.resume(paused.runId, 'seven'), InvalidAnswerError)
  await assert.rejects(collect(orch.resumeStream(paused.runId, 'seven')), InvalidAnswerError)
  await assert.rejects(orch.resume(paused.runId), (e) => e instanceof RunStateError && e.code === 'run_not_waiting')
  assert.equal((await orch.getRun(paused.runId)).status, 'waiting_for_input')
  assert.equal(n.get('ask'), 1, 'a refused answer calls no agent')

  const done = await orch.resume(paused.runId, 3)
  assert.equal(done.output, 'ask heard 3')
  await assert.rejects(orch.resume(paused.runId, 3), RunStateError)
  await assert.rejects(orch.resume('no-such-run', 1), (e) => e instanceof RunNotFoundError && e.code === 'run_not_found')
  assert.equal(await orch.getRun('no-such-run'), null)
  await assert.rejects(orch.resume(1, 1), TypeError)
  assert.throws(() => orch.resumeStream(paused.runId, () => 1), TypeError)
})

test('only one of two concurrent answers resumes the run', async () => {
  const orch = new Orchestrator()
  const n = counter()
  addAsker(orch, 'ask', n)
  const paused = await orch.run('sequential', 't', { agents: ['ask'] })
  const outcomes = await Promise.allSettled([orch.resume(paused.runId, 1), orch.resume(paused.runId, 2)])
  const done = outcomes.filter((o) => o.status === 'fulfilled')
  const refused = outcomes.filter((o) => o.status === 'rejected')
  assert.equal(done.length, 1)
  assert.equal(refused.length, 1)
  assert.ok(refused[0].reason instanceof RunStateError)
  assert.equal(n.get('ask'), 2)
})

test('an expired question ends the run timed out', async () => {
  const orch = new Orchestrator()
  addAsker(orch, 'ask', counter())
  const paused = await orch.run('sequential', 't', { agents: ['ask'], options: { inputTimeoutMs: 0 } })
  assert.ok(paused.input.expiresAt)
  await assert.rejects(orch.resume(paused.runId, 1), (e) => e instanceof InputExpiredError && e instanceof TimeoutError)
  const record = await orch.getRun(paused.runId)
  assert.equal(record.status, 'timed_out')
  assert.equal(record.error.code, 'input_expired')
})

test('a waiting run can be cancelled', async () => {
  const orch = new Orchestrator()
  addAsker(orch, 'ask', counter())
  const paused = await orch.run('sequential', 't', { agents: ['ask'] })
  assert.equal(await orch.cancelRun(paused.runId), true)
  assert.equal((await orch.getRun(paused.runId)).status, 'cancelled')
  assert.equal(await orch.cancelRun(paused.runId), false)
  await assert.rejects(orch.resume(paused.runId, 1), RunStateError)
  assert.equal(await orch.cancelRun('no-such-run'), false)
})

test('a paused stream ends with input_requested; the resumed one starts with run_resumed', async () => {
  const orch = new Orchestrator()
  const n = counter()
  addCounted(orch, 'a', n)
  addAsker(orch, 'ask', n)
  const stream = orch.stream('sequential', 't', { agents: ['a', 'ask'] })
  const events = await collect(stream)
  const kinds = events.map((e) => e.type)
  assert.equal(kinds[0], 'run_started')
  assert.equal(kinds.at(-1), 'input_requested')
  assert.ok(!kinds.includes('run_completed'))
  const last = events.at(-1)
  assert.equal(last.request.key, 'step:1')
  assert.equal(last.toJSON().request.key, 'step:1')
  const paused = await stream.result()
  assert.equal(paused.status, 'waiting_for_input')

  const resumed = orch.resumeStream(paused.runId, 2)
  assert.equal(resumed.runId, paused.runId)
  const after = await collect(resumed)
  assert.equal(after[0].type, 'run_resumed')
  assert.equal(after.at(-1).type, 'run_completed')
  assert.equal(resumed.sessionId, paused.sessionId)
  assert.deepEqual(
    after.filter((e) => e.type === 'agent_started').map((e) => e.agent),
    ['ask'],
    'the recorded step of a is not run again',
  )
  assert.equal((await resumed.result()).output, 'ask heard 2')
  assert.equal(n.get('a'), 1)
})

test('a resumed stream cancelled before it starts ends cancelled', async () => {
  const orch = new Orchestrator()
  orch.addAgent('ask', (input) => {
    if (input.answer === undefined) throw new InputRequired('go on?')
    return new Promise(() => {})
  })
  const paused = await orch.run('sequential', 't', { agents: ['ask'] })
  const stream = orch.resumeStream(paused.runId, 'yes')
  stream.cancel()
  const events = await collect(stream)
  assert.equal(events.at(-1).type, 'run_cancelled')
  assert.equal((await orch.getRun(paused.runId)).status, 'cancelled')
})

test('InputRequired is an OrchestraError that serializes its question', () => {
  const q = new InputRequired('Name?', { schema: { type: 'string' } })
  assert.ok(q instanceof OrchestraError)
  assert.equal(q.code, 'input_required')
  assert.equal(q.message, 'Name?')
  assert.deepEqual(q.toJSON(), { prompt: 'Name?', schema: { type: 'string' } })
})
