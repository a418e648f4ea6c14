// The same run gives the same event JSON from Node as from Rust, Python and
// REST: the events of a fixed run, normalized, equal
// orchestra-core/tests/fixtures/events-golden.jsonl (see
// orchestra-core/tests/golden_events.rs for the run and the normalization).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { Orchestrator } from '../index.mjs'
import { collect } from './helpers.mjs'

const GOLDEN = new URL('../../orchestra-core/tests/fixtures/events-golden.jsonl', import.meta.url)
const RESEARCH =
  "Research notes on 'tides': (1) background and definitions; (2) two well-established facts; (3) one open question worth a follow-up."
const IDS = new Set(['run_id', 'session_id'])
const TIMES = new Set(['timestamp', 'created_at', 'started_at', 'finished_at', 'updated_at'])

function normalize(value) {
  if (Array.isArray(value)) return value.map(normalize)
  if (value === null || typeof value !== 'object') return value
  const out = {}
  for (const k of Object.keys(value).sort()) {
    if (IDS.has(k)) out[k] = '<id>'
    else if (TIMES.has(k)) out[k] = '<time>'
    else if (k === 'duration_ms') out[k] = 0
    else out[k] = normalize(value[k])
  }
  return out
}

test('the event JSON of a fixed run matches the golden file', async () => {
  const orch = new Orchestrator()
  orch.addAgent('demo_researcher', () => ({ content: RESEARCH, usage: { promptTokens: 19, completionTokens: 19 } }), {
    description: 'research notes',
  })
  orch.addAgent(
    'demo_writer',
    async () => ({ content: `Draft: a short article built from: ${RESEARCH}`, usage: { promptTokens: 25, completionTokens: 25 } }),
    { description: 'drafts' },
  )
  const events = await collect(orch.stream('sequential', 'tides', { agents: ['demo_researcher', 'demo_writer'] }))
  // An event's JSON form is the core's exact event JSON.
  const lines = events.map((e) => JSON.stringify(normalize(JSON.parse(JSON.stringify(e)))) + '\n').join('')
  assert.equal(lines, readFileSync(GOLDEN, 'utf8'))
})
