// Overhead of orchestra-sdk against a plain-JS floor.
//
// Three workloads with trivial JS agents, each run two ways in the same
// process: through orchestra-sdk (the Rust core via napi), and through a
// plain-JS floor that makes the same agent calls with the same inputs
// (task, conversation so far, ids, metadata, state) and keeps the same
// records (steps, messages, a session in a Map) but has no policies, events,
// validation or thread hops. Two modes:
//   latency     one run at a time; mean time per run
//   throughput  BATCH runs at once under Promise.all; runs per second
//
// Run: cd bindings-node && npm ci && npm run build && node bench/bench.mjs
// Options (environment): BENCH_RUNS (runs per measurement, default 2000),
// BENCH_BATCH (concurrent runs in throughput mode, default 100), BENCH_REPS
// (measurements per figure, interleaved between the two sides; the best is
// kept, which filters out noise from other processes; default 3).
import { randomUUID } from 'node:crypto'
import { Orchestrator } from '../index.mjs'

const RUNS = Number(process.env.BENCH_RUNS ?? 2000)
const BATCH = Number(process.env.BENCH_BATCH ?? 100)
const REPS = Number(process.env.BENCH_REPS ?? 3)
const ROUNDS = 10

// ---- the plain-JS floor -------------------------------------------------

class Floor {
  constructor() {
    this.agents = new Map()
    this.sessions = new Map()
  }

  addAgent(name, fn) {
    this.agents.set(name, fn)
  }

  async call(name, task, messages, ctx, steps) {
    const started = Date.now()
    const input = { task, messages: messages.slice(), sessionId: ctx.sessionId, runId: ctx.runId, metadata: {}, state: ctx.state }
    const out = await this.agents.get(name)(input)
    const content = typeof out === 'string' ? out : out.content
    const message = { role: 'assistant', name, content, createdAt: new Date().toISOString() }
    steps.push({ index: steps.length, agent: name, input: task, status: 'completed', output: { content }, attempts: 1, durationMs: Date.now() - started })
    return message
  }

  async run(pattern, task, { agents, options = {} }) {
    const ctx = { runId: randomUUID(), sessionId: randomUUID(), state: {} }
    const history = [{ role: 'user', content: task, createdAt: new Date().toISOString() }]
    const steps = []
    let output
    if (pattern === 'sequential') {
      let current = task
      for (const name of agents) {
        const m = await this.call(name, current, history, ctx, steps)
        history.push(m)
        current = m.content
      }
      output = current
    } else if (pattern === 'concurrent') {
      const answers = await Promise.all(agents.map((name) => this.call(name, task, history, ctx, steps)))
      history.push(...answers)
      output = answers.map((m) => `## ${m.name}\n${m.content}`).join('\n\n')
    } else if (pattern === 'group_chat') {
      const rounds = options.maxRounds ?? 10
      for (let round = 0; round < rounds; round++) {
        const name = agents[round % agents.length]
        history.push(await this.call(name, task, history, ctx, steps))
      }
      output = history.at(-1).content
    }
    const result = { runId: ctx.runId, sessionId: ctx.sessionId, pattern, task, status: 'completed', output, steps }
    this.sessions.set(ctx.sessionId, JSON.parse(JSON.stringify({ id: ctx.sessionId, messages: history, runs: [result] })))
    return result
  }
}

// ---- workloads ------------------------------------------------------------

const names = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix}${i}`)
const WORKLOADS = [
  { label: '5-agent sequential', pattern: 'sequential', agents: names('s', 5), options: {} },
  { label: '10-agent concurrent', pattern: 'concurrent', agents: names('c', 10), options: { aggregator: 'merge' } },
  { label: '10-round group chat', pattern: 'group_chat', agents: names('g', 2), options: { maxRounds: ROUNDS } },
]

function register(target) {
  for (const w of WORKLOADS) {
    for (const name of w.agents) {
      // trivial agents: half sync, half async
      if (name.endsWith('1') || name.endsWith('3')) target.addAgent(name, async (input) => `${name}: ${input.task.length}`)
      else target.addAgent(name, (input) => `${name}: ${input.task.length}`)
    }
  }
}

const orch = new Orchestrator()
register({ addAgent: (name, fn) => orch.addAgent(name, fn, { description: 'trivial' }) })
const floor = new Floor()
register(floor)

// Sessions accumulate in both stores; keep the memory bounded between measurements.
async function clearSessions(results) {
  await Promise.all(results.map((r) => orch.deleteSession(r.sessionId)))
  floor.sessions.clear()
}

async function latency(target, w) {
  const results = []
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < RUNS; i++) results.push(await target.run(w.pattern, `task ${i}`, { agents: w.agents, options: w.options }))
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e3
  check(results, w)
  return { perRunUs: elapsed / RUNS, results }
}

async function throughput(target, w) {
  const results = []
  const t0 = process.hrtime.bigint()
  for (let done = 0; done < RUNS; done += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, RUNS - done) }, (_, i) =>
      target.run(w.pattern, `task ${done + i}`, { agents: w.agents, options: w.options }),
    )
    results.push(...(await Promise.all(batch)))
  }
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
  check(results, w)
  return { runsPerSec: RUNS / elapsed, results }
}

function check(results, w) {
  const expectedSteps = w.pattern === 'group_chat' ? ROUNDS : w.agents.length
  for (const r of results) {
    if (r.status !== 'completed' || r.steps.length !== expectedSteps) {
      throw new Error(`${w.label}: bad result ${JSON.stringify(r).slice(0, 300)}`)
    }
  }
}

const fmt = (x, digits = 1) => x.toFixed(digits)

async function main() {
  // warm-up: JIT, the Tokio runtime, allocator
  for (const w of WORKLOADS) {
    const r1 = await latency(orch, { ...w })
    await clearSessions(r1.results)
    await latency(floor, w)
  }
  const rows = []
  for (const w of WORKLOADS) {
    const best = { lo: Infinity, lf: Infinity, to: 0, tf: 0 }
    for (let rep = 0; rep < REPS; rep++) {
      const lo = await latency(orch, w)
      await clearSessions(lo.results)
      const lf = await latency(floor, w)
      floor.sessions.clear()
      const to = await throughput(orch, w)
      await clearSessions(to.results)
      const tf = await throughput(floor, w)
      floor.sessions.clear()
      best.lo = Math.min(best.lo, lo.perRunUs)
      best.lf = Math.min(best.lf, lf.perRunUs)
      best.to = Math.max(best.to, to.runsPerSec)
      best.tf = Math.max(best.tf, tf.runsPerSec)
    }
    rows.push({
      workload: w.label,
      'latency orchestra (µs/run)': fmt(best.lo),
      'latency floor (µs/run)': fmt(best.lf),
      'latency ratio': fmt(best.lo / best.lf, 2),
      [`throughput orchestra (runs/s, ${BATCH} at once)`]: fmt(best.to, 0),
      'throughput floor (runs/s)': fmt(best.tf, 0),
      'throughput ratio': fmt(best.tf / best.to, 2),
    })
  }
  console.log(`orchestra-sdk vs plain-JS floor: ${RUNS} runs per measurement, best of ${REPS}, node ${process.version}, ${process.platform}-${process.arch}`)
  console.table(rows)
  console.log('ratio = orchestra time / floor time (lower is better; 1.00 = no overhead)')
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
