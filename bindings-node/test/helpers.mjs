// Shared test helpers.
import { Orchestrator } from '../index.mjs'

/** An orchestrator with a few plain agents. */
export function withAgents(config) {
  const orch = new Orchestrator(config)
  orch.addAgent('researcher', async (input) => `facts about ${input.task}`, { description: 'finds facts and sources' })
  orch.addAgent('writer', (input) => `article from ${input.task}`, { description: 'writes prose and articles' })
  orch.addAgent('critic', () => 'APPROVED', { description: 'reviews drafts' })
  return orch
}

/** A promise with its resolve function exposed. */
export function deferred() {
  let resolve
  const promise = new Promise((r) => {
    resolve = r
  })
  return { promise, resolve }
}

/** Collects a stream's events. */
export async function collect(stream) {
  const events = []
  for await (const ev of stream) events.push(ev)
  return events
}
