// Typed and parallel handoffs, cost budgets and session budgets from JavaScript.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Orchestrator, Handoff, InvalidHandoffPayloadError, OrchestraError } from '../index.mjs'
import { collect } from './helpers.mjs'

const INVOICE = {
  type: 'object',
  required: ['invoice_id'],
  additionalProperties: false,
  properties: { invoice_id: { type: 'string' } },
}

function billingDesk(payload, seen) {
  const orch = new Orchestrator()
  orch.addAgent('triage', (input) => {
    assert.equal(input.handoff, undefined)
    return new Handoff('billing', 'invoice question', { payload })
  }, { description: 'routes requests' })
  orch.addAgent('billing', (input) => {
    seen.push(input.handoff)
    return `billing got ${input.handoff.payload.invoice_id} from ${input.handoff.reason}`
  }, { description: 'invoices' })
  return orch
}

const desk = (extra = {}) => ({
  agents: ['triage', 'billing'],
  options: { payloadSchemas: { billing: INVOICE } },
  ...extra,
})

test('a typed payload reaches the target as input.handoff', async () => {
  const seen = []
  const result = await billingDesk({ invoice_id: 'A-1' }, seen).run('handoff', 'refund?', desk())
  assert.equal(result.status, 'completed', JSON.stringify(result.error))
  assert.equal(result.output, 'billing got A-1 from invoice question')
  assert.deepEqual(seen, [{ to: 'billing', reason: 'invoice question', payload: { invoice_id: 'A-1' } }])
  // payloads and payload schemas are user data: their keys keep their case
  assert.deepEqual(result.steps[0].output.handoff.payload, { invoice_id: 'A-1' })
  assert.deepEqual(result.options.payloadSchemas, { billing: INVOICE })
})

for (const [what, payload] of [['a payload of the wrong type', { invoice_id: 7 }], ['no payload', undefined]]) {
  test(`${what} is refused with InvalidHandoffPayloadError`, async () => {
    const seen = []
    const orch = billingDesk(payload, seen)
    const result = await orch.run('handoff', 'refund?', desk())
    assert.equal(result.status, 'failed')
    assert.equal(result.error.code, 'invalid_handoff_payload')
    await assert.rejects(orch.run('handoff', 'refund?', desk({ throwOnFailure: true })), (e) => {
      assert.ok(e instanceof InvalidHandoffPayloadError)
      assert.ok(e instanceof OrchestraError)
      assert.equal(e.code, 'invalid_handoff_payload')
      return true
    })
    assert.deepEqual(seen, [], 'billing never ran')
  })
}

/** `triage` asks billing and sales at once, then sums up what it heard. */
function fanOut(calls) {
  const orch = new Orchestrator()
  orch.addAgent('triage', (input) => {
    calls.push('triage')
    if (calls.length === 1) {
      return [new Handoff('billing', 'check the invoice'), new Handoff('sales', 'offer a discount', { payload: { percent: 10 } })]
    }
    const heard = input.messages.filter((m) => m.name === 'billing' || m.name === 'sales').map((m) => m.content)
    return `summary: ${heard.join(' + ')}`
  }, { description: 'routes requests' })
  orch.addAgent('billing', (input) => `billing(${input.task})`, { description: 'invoices' })
  orch.addAgent('sales', (input) => `sales(${input.task}, ${input.handoff.payload.percent}%)`, { description: 'sells' })
  return orch
}

test('parallel handoffs come back to the agent that asked', async () => {
  const calls = []
  const events = await collect(
    fanOut(calls).stream('handoff', 't', { agents: ['triage', 'billing', 'sales'], options: { parallelHandoffs: true } }),
  )
  const result = events.at(-1).result
  assert.equal(result.status, 'completed', JSON.stringify(result.error))
  assert.equal(result.output, 'summary: billing(check the invoice) + sales(offer a discount, 10%)')
  assert.equal(calls.length, 2)
  assert.deepEqual(events.filter((e) => e.type === 'handoff').map((e) => e.to), ['billing', 'sales'])
  assert.ok(!events.some((e) => e.type === 'handoff_conflict'))
})

test('several handoffs without parallelHandoffs take the first and emit handoff_conflict', async () => {
  const events = await collect(fanOut([]).stream('handoff', 't', { agents: ['triage', 'billing', 'sales'] }))
  assert.equal(events.at(-1).result.output, 'billing(t)')
  const conflicts = events.filter((e) => e.type === 'handoff_conflict')
  assert.equal(conflicts.length, 1)
  const [c] = conflicts
  assert.deepEqual([c.agent, c.requested, c.chosen], ['triage', ['billing', 'sales'], 'billing'])
})

/** Agents whose every answer uses 30 tokens and costs 0.4 (400 000 micros). */
function billed(names, calls) {
  const orch = new Orchestrator()
  for (const name of names) {
    orch.addAgent(name, (input) => {
      calls.push(name)
      return { content: `${name}(${input.task})`, usage: { promptTokens: 20, completionTokens: 10, costMicros: 400_000 } }
    }, { description: 'billed' })
  }
  return orch
}

test('a maxCost budget stops the run', async () => {
  const calls = []
  const names = ['a', 'b', 'c', 'd', 'e']
  const events = await collect(
    billed(names, calls).stream('sequential', 't', {
      agents: names,
      options: { termination: { any: [{ maxRounds: 10 }, { maxCost: 1.0 }] } },
    }),
  )
  const result = events.at(-1).result
  assert.equal(result.status, 'completed')
  assert.equal(result.termination, 'max_cost: 1')
  assert.deepEqual(calls, ['a', 'b', 'c'])
  assert.deepEqual(result.usage, { promptTokens: 60, completionTokens: 30, totalTokens: 90, costMicros: 1_200_000 })
  assert.equal(result.steps[0].output.usage.costMicros, 400_000)
  const budget = events.filter((e) => e.type === 'budget_exceeded').map((e) => [e.budget, e.limit, e.used])
  assert.deepEqual(budget, [['max_cost_micros', 1_000_000, 1_200_000]])
})

test('a sessionBudget stops the second run of a session', async () => {
  const calls = []
  const names = ['a', 'b', 'c']
  const orch = billed(names, calls)
  const opts = { agents: names, sessionId: 'node-budget', options: { sessionBudget: { maxCost: 1.5 } } }
  const first = await orch.run('sequential', 't', opts)
  assert.equal(first.termination, undefined)
  assert.equal(first.usage.costMicros, 1_200_000)
  const second = await orch.run('sequential', 't', opts)
  assert.equal(second.status, 'completed')
  assert.equal(second.termination, 'session_max_cost: 1.5')
  assert.equal(second.steps.length, 1)
  assert.equal(calls.length, 4)
})
