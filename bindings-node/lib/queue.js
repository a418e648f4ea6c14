'use strict'
// Agents served by workers behind a queue (Redis Streams or NATS).

const native = require('./native')
const { toSnake } = require('./convert')
const { fromNative, OrchestraError } = require('./errors')
const { wrapAgent } = require('./orchestrator')

function nativeOptions(options) {
  const { transport: _transport, description: _description, ...rest } = options
  const snake = toSnake(rest)
  for (const k of Object.keys(snake)) if (snake[k] === undefined) delete snake[k]
  return JSON.stringify(snake)
}

/**
 * A running worker: takes one request at a time from its agent's queue.
 * `await worker.stop()` stops taking requests and resolves once the request
 * in flight is answered; `worker.abort()` ends it at once, as a crash would
 * (another worker then takes its request over).
 */
class AgentWorker {
  constructor(nativeWorker) {
    this._native = nativeWorker
    // Like a listening server, a worker keeps the process alive until it stops.
    nativeWorker.ended().catch(() => {})
  }

  /** The worker's consumer name on the queue. */
  get id() {
    return this._native.id
  }

  get running() {
    return this._native.running
  }

  async stop() {
    try {
      await this._native.stop()
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** Resolves when the worker has stopped. */
  async wait() {
    try {
      await this._native.wait()
    } catch (e) {
      throw fromNative(e)
    }
  }

  abort() {
    this._native.abort()
  }
}

/**
 * Serves `fn` (written like an `Orchestrator.addAgent` function) as agent
 * `name` through a queue: `{ transport: 'redis://…' | 'nats://…', prefix?,
 * jetstream?, claimIdleMs?, description?, registryUrl?, registryPrefix? }`.
 * Resolves once the worker receives requests.
 */
async function serveAgent(name, fn, options = {}) {
  if (typeof name !== 'string' || name === '') throw new TypeError('agent name must be a non-empty string')
  if (typeof fn !== 'function') throw new TypeError('agent must be a function')
  const { transport, description = '' } = options
  if (typeof transport !== 'string' || transport === '') {
    throw new TypeError('serveAgent needs options.transport, e.g. "redis://127.0.0.1:6379" or "nats://127.0.0.1:4222"')
  }
  if (typeof native.serveAgent !== 'function') {
    throw new OrchestraError('orchestra-sdk was built without queue support (features redis / nats)')
  }
  try {
    const w = await native.serveAgent(name, String(description), wrapAgent(fn), transport, nativeOptions(options))
    return new AgentWorker(w)
  } catch (e) {
    throw fromNative(e)
  }
}

module.exports = { AgentWorker, serveAgent, nativeOptions }
