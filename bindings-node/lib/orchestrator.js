'use strict'
// The public Orchestrator: a thin facade over the native core.

const native = require('./native')
const { toCamel, toSnake, eventToCamel, agentInputToCamel } = require('./convert')
const { fromNative, fromInfo, OrchestraError, InputRequired } = require('./errors')
const { Handoff } = require('./handoff')
const { MemoryStore, RedisStore } = require('./stores')

const PATTERNS = ['sequential', 'concurrent', 'handoff', 'group_chat', 'dynamic']
// The last event of a run's stream, carrying its result (`input_requested`:
// the run paused for a person).
const TERMINAL = ['run_completed', 'run_failed', 'run_cancelled', 'input_requested']

function errorMessage(e) {
  if (e instanceof Error) return e.message || e.name
  if (typeof e === 'string') return e
  try {
    return JSON.stringify(e)
  } catch {
    return String(e)
  }
}

// Wraps a user function (sync or async) as the native callback shape:
// JSON string in, a JSON envelope out — directly when the function answered
// synchronously, as a Promise otherwise. Never throws or rejects. An
// `InputRequired` (thrown or returned) becomes the `input` envelope.
//
// Inside a run driven on the JS thread, the native side calls it directly as
// `(json, slot, messages)`: an async answer is then handed over with
// `settleCall(slot, envelope)` (and `undefined` returned), and an agent's
// conversation comes as its own JSON string (`messages`), parsed only when
// the agent reads `input.messages`. With `text`, a plain string answer on
// that path is handed over as TEXT and the string, without JSON.
const TEXT = '\u0000'

function wrapCallback(fn, decode, encode, text = false) {
  const ok = (value) => {
    if (value instanceof InputRequired) return ask(value)
    try {
      return JSON.stringify({ ok: encode(value) })
    } catch (e) {
      return fail(e)
    }
  }
  const ask = (q) => {
    try {
      return JSON.stringify({ input: q.toJSON() })
    } catch (e) {
      return JSON.stringify({ error: { message: `InputRequired schema and context must be JSON: ${errorMessage(e)}` } })
    }
  }
  const fail = (e) => {
    if (e instanceof InputRequired) return ask(e)
    let message = errorMessage(e)
    if (message === '') message = 'agent failed'
    return JSON.stringify({ error: { message, retryable: Boolean(e && e.retryable) } })
  }
  const direct = (value) => (text && typeof value === 'string' ? TEXT + value : ok(value))
  return function orchestraCallback(json, slot, messages) {
    let value
    try {
      value = fn(decode(JSON.parse(json), messages))
    } catch (e) {
      return fail(e)
    }
    if (value !== null && typeof value === 'object' && typeof value.then === 'function') {
      if (slot === undefined) return Promise.resolve(value).then(ok, fail)
      Promise.resolve(value).then(
        (v) => native.settleCall(slot, direct(v)),
        (e) => native.settleCall(slot, fail(e)),
      )
      return undefined
    }
    return slot === undefined ? ok(value) : direct(value)
  }
}

function decodeInput(raw, messages) {
  return agentInputToCamel(raw, messages)
}

// Several handoffs asked for in one turn: the first is `handoff`, the others `handoffs`.
function encodeHandoffs(list) {
  const out = { content: list[0].reason, handoff: list[0].toJSON() }
  if (list.length > 1) out.handoffs = list.slice(1).map((h) => h.toJSON())
  return out
}

// string | Handoff | Handoff[] | { content, data?, statePatch?, usage?, handoff?, handoffs? }
// -> core AgentOutput JSON.
function encodeOutput(value) {
  if (typeof value === 'string') return { content: value }
  if (value instanceof Handoff) return encodeHandoffs([value])
  if (Array.isArray(value) && value.length > 0 && value.every((h) => h instanceof Handoff)) {
    return encodeHandoffs(value)
  }
  if (value === null || typeof value !== 'object') return value === undefined ? null : value
  const out = toSnake(value)
  if (value.handoff instanceof Handoff) out.handoff = value.handoff.toJSON()
  if (Array.isArray(value.handoffs)) {
    out.handoffs = value.handoffs.map((h) => (h instanceof Handoff ? h.toJSON() : toSnake(h)))
  }
  if (out.handoff && out.content === undefined) out.content = out.handoff.reason ?? ''
  if (out.content === undefined) out.content = ''
  if (out.usage && out.usage.total_tokens === undefined) {
    out.usage.total_tokens = (out.usage.prompt_tokens ?? 0) + (out.usage.completion_tokens ?? 0)
  }
  return out
}

function encodeChoice(value) {
  if (value === null || value === undefined || value === false) return null
  if (typeof value === 'string') return { agent: value, reason: 'custom manager' }
  return { agent: value.agent, reason: value.reason ?? '' }
}

function encodeOptionalText(fallback) {
  return (value) => {
    if (value === null || value === undefined || value === false) return null
    if (value === true) return fallback
    return String(value)
  }
}

function isEvent(raw) {
  return raw !== null && typeof raw === 'object' && typeof raw.type === 'string'
}

/** A camelCase event whose JSON form (`toJSON`) is the core's exact event JSON. */
function toEvent(raw) {
  const event = eventToCamel(raw)
  Object.defineProperty(event, 'toJSON', { value: () => raw, enumerable: false })
  Object.defineProperty(event, 'raw', { value: raw, enumerable: false })
  return event
}

function buildRequest(pattern, task, opts = {}) {
  if (typeof pattern !== 'string') throw new TypeError('pattern must be a string')
  if (typeof task !== 'string') throw new TypeError('task must be a string')
  const request = { pattern, task }
  if (opts.agents !== undefined && opts.agents !== null) request.agents = [...opts.agents]
  if (opts.sessionId !== undefined && opts.sessionId !== null) request.session_id = opts.sessionId
  if (opts.options !== undefined && opts.options !== null) request.options = toSnake(opts.options)
  if (opts.metadata !== undefined && opts.metadata !== null) request.metadata = opts.metadata
  return JSON.stringify(request)
}

/** The events of one run, as an async iterator. Breaking out of `for await` cancels the run. */
class RunStream {
  constructor(handle) {
    this._handle = handle
    this._buffer = []
    this._at = 0
    this._done = false
    this._result = null
    this._onDone = null
    /** The run's id. */
    this.runId = handle.runId
    /** The session the run writes to. */
    this.sessionId = handle.sessionId
    // Keeps the event loop alive until the run has ended, even while nobody
    // awaits next(): JS agents are called through an unreferenced function.
    handle.ended().catch(() => {})
  }

  [Symbol.asyncIterator]() {
    return this
  }

  async _fill() {
    let json
    try {
      json = await this._handle.next()
    } catch (e) {
      throw fromNative(e)
    }
    if (json === null) {
      this._done = true
      if (this._onDone) this._onDone()
      return
    }
    this._buffer = JSON.parse(json)
    this._at = 0
  }

  async next() {
    while (this._at >= this._buffer.length && !this._done) await this._fill()
    if (this._at < this._buffer.length) {
      const raw = this._buffer[this._at]
      this._buffer[this._at++] = undefined
      const event = toEvent(raw)
      if (isEvent(raw) && raw.result && TERMINAL.includes(raw.type)) {
        this._result = event.result
      }
      return { value: event, done: false }
    }
    return { value: undefined, done: true }
  }

  /** Cancels the run and waits until it has ended (and is recorded as cancelled). */
  async return() {
    this.cancel()
    await this._drain()
    return { value: undefined, done: true }
  }

  /** Requests cancellation; the stream then ends with `run_cancelled`. */
  cancel() {
    if (!this._done) this._handle.cancel()
  }

  async _drain() {
    for (;;) {
      const { done } = await this.next()
      if (done) return
    }
  }

  /** Consumes the rest of the stream and resolves to the run's result. */
  async result() {
    await this._drain()
    return this._result
  }
}

// The native stream of a resumed run, available once the run is claimed:
// `next()` waits for it (and rejects when the resume was refused), and a
// cancel before then reaches the run as soon as it starts.
class PendingStream {
  constructor(promise, runId) {
    this.runId = runId
    this.sessionId = undefined
    this._native = null
    this._cancelled = false
    this._ready = promise.then((handle) => {
      this._native = handle
      this.sessionId = handle.sessionId
      if (this._cancelled) handle.cancel()
      return handle
    })
    // Reported by next(); not an unhandled rejection when nobody iterates.
    this._ready.catch(() => {})
  }

  async next() {
    const handle = await this._ready
    return handle.next()
  }

  ended() {
    return this._ready.then((handle) => handle.ended())
  }

  cancel() {
    this._cancelled = true
    if (this._native) this._native.cancel()
  }
}

function encodeAnswer(answer) {
  if (answer === undefined || answer === null) return null
  const json = JSON.stringify(answer)
  if (json === undefined) throw new TypeError('answer must be a JSON value')
  return json
}

function failed(result, throwOnFailure) {
  return throwOnFailure && result.status !== 'completed' && result.status !== 'waiting_for_input'
}

/**
 * Coordinates agents with one of five patterns: sequential, concurrent,
 * handoff, group_chat, dynamic.
 */
class Orchestrator {
  constructor(config = {}) {
    const store = config.store
    if (store !== undefined && store !== null && !(store instanceof MemoryStore || store instanceof RedisStore)) {
      throw new TypeError('store must be a MemoryStore or a RedisStore')
    }
    try {
      this._native = new native.NativeOrchestrator(store ? store._native : null)
    } catch (e) {
      throw fromNative(e)
    }
  }

  /**
   * Registers (or replaces) an agent. `fn(input)` may be sync or async and
   * returns a string, `{ content, data?, statePatch?, usage? }` or a `Handoff`.
   * A thrown error fails the call; set `error.retryable = true` to let the
   * retry policy try again.
   */
  addAgent(name, fn, { description = '' } = {}) {
    if (typeof name !== 'string' || name === '') throw new TypeError('agent name must be a non-empty string')
    if (typeof fn !== 'function') throw new TypeError('agent must be a function')
    this._native.addAgent(name, String(description), wrapCallback(fn, decodeInput, encodeOutput, true))
    return this
  }

  /**
   * Registers an agent service called with one JSON POST per step
   * (the agent protocol in docs/agent-protocol.md).
   */
  addHttpAgent(name, url, { description = '', timeoutMs, headers } = {}) {
    this._requireRemote()
    const pairs = headers ? Object.entries(headers).map(([k, v]) => [k, String(v)]) : undefined
    try {
      this._native.addHttpAgent(name, url, String(description), timeoutMs ?? null, pairs ?? null)
    } catch (e) {
      throw fromNative(e)
    }
    return this
  }

  /**
   * Registers an OpenAI-compatible chat model as an agent:
   * `{ name, description?, baseUrl, model, systemPrompt?, apiKeyEnv?, temperature?, stream?, ... }`.
   */
  addOpenAIAgent(config) {
    this._requireRemote()
    try {
      this._native.addOpenaiAgent(JSON.stringify(toSnake(config)))
    } catch (e) {
      throw fromNative(e)
    }
    return this
  }

  /** Registers an LLM group chat manager over an OpenAI-compatible model `{ baseUrl, model, ... }`. */
  addLlmManager(name, model, { instructions } = {}) {
    this._requireRemote()
    try {
      this._native.addLlmManager(name, JSON.stringify(toSnake(model)), instructions ?? null)
    } catch (e) {
      throw fromNative(e)
    }
    return this
  }

  /** Registers an LLM planner over an OpenAI-compatible model `{ baseUrl, model, ... }`. */
  addLlmPlanner(name, model) {
    this._requireRemote()
    try {
      this._native.addLlmPlanner(name, JSON.stringify(toSnake(model)))
    } catch (e) {
      throw fromNative(e)
    }
    return this
  }

  /** Fetches an A2A agent card and registers the peer; resolves to its name. */
  async addA2aAgent(config) {
    this._requireRemote()
    try {
      return await this._native.addA2aAgent(JSON.stringify(toSnake(config)))
    } catch (e) {
      throw fromNative(e)
    }
  }

  /**
   * Registers an agent answered by workers behind a queue (`serveAgent`, or
   * any worker speaking the queue contract of docs/agent-protocol.md):
   * `transport` is `redis://…` or `nats://…`; options `{ description?,
   * timeoutMs?, prefix?, jetstream? }` (prefix and jetstream must match the
   * workers'). Resolves once the transport is connected.
   */
  async addQueueAgent(name, transport, options = {}) {
    if (typeof this._native.addQueueAgent !== 'function') {
      throw new OrchestraError('orchestra-sdk was built without queue support (features redis / nats)')
    }
    const { nativeOptions } = require('./queue')
    try {
      await this._native.addQueueAgent(name, transport, String(options.description ?? ''), nativeOptions(options))
    } catch (e) {
      throw fromNative(e)
    }
    return this
  }

  _requireRemote() {
    if (typeof this._native.addHttpAgent !== 'function') {
      throw new OrchestraError('orchestra-sdk was built without remote agents (feature http-agents)')
    }
  }

  /** Removes an agent; false if there was none. */
  removeAgent(name) {
    return this._native.removeAgent(name)
  }

  /** The registered agents, in registration order. */
  agents() {
    return JSON.parse(this._native.agents())
  }

  /**
   * Registers a group chat manager, used with `options: { manager: name }`.
   * Either a function `(chat) => speaker | { agent, reason } | null` (null ends
   * the chat) or an object `{ selectNext, shouldTerminate?, filterResult? }`.
   */
  addManager(name, manager) {
    const m = typeof manager === 'function' ? { selectNext: manager } : manager
    if (!m || typeof m.selectNext !== 'function') {
      throw new TypeError('manager must be a function or an object with selectNext(chat)')
    }
    const methods = {
      select_next: [m.selectNext.bind(m), encodeChoice],
      should_terminate: [m.shouldTerminate?.bind(m), encodeOptionalText('custom termination')],
      filter_result: [m.filterResult?.bind(m), encodeOptionalText('')],
    }
    const dispatch = (call) => {
      const [fn, encode] = methods[call.method] ?? []
      if (!fn) throw new OrchestraError(`manager has no ${call.method}`)
      const chat = toCamel(call.chat)
      chat.runId = call.run_id
      chat.sessionId = call.session_id
      const answer = fn(chat)
      return answer !== null && typeof answer === 'object' && typeof answer.then === 'function'
        ? Promise.resolve(answer).then(encode)
        : encode(answer)
    }
    const cb = wrapCallback(dispatch, (x) => x, (x) => x)
    this._native.addManager(name, cb, typeof m.shouldTerminate === 'function', typeof m.filterResult === 'function')
    return this
  }

  /**
   * Registers a termination predicate, used with
   * `options: { termination: { custom: name } }`. After each agent step of a
   * run that uses it, `fn(state)` is called with
   * `{ rounds, messages, tokens, costMicros, elapsedMs }` and returns a
   * boolean or a Promise of one; the run ends when it is `true`. A throw, a
   * rejection or any other value counts as `false`.
   */
  addCondition(name, fn) {
    if (typeof name !== 'string') throw new TypeError('condition name must be a string')
    if (typeof fn !== 'function') throw new TypeError('condition must be a function')
    const decode = (raw) => ({
      rounds: raw.rounds,
      messages: agentInputToCamel({ messages: raw.messages }).messages,
      tokens: raw.tokens,
      costMicros: raw.cost_micros,
      elapsedMs: raw.elapsed_ms,
    })
    this._native.addCondition(name, wrapCallback(fn, decode, (holds) => holds === true))
    return this
  }

  /**
   * Registers a planner for the dynamic pattern, used with
   * `options: { planner: name }`. `fn(request)` returns
   * `{ steps: [{ pattern, agents, task, options? }], rationale }`; it is
   * called again with `request.ledger` when the run replans.
   */
  addPlanner(name, fn) {
    if (typeof fn !== 'function') throw new TypeError('planner must be a function')
    const decode = (raw) => toCamel(raw)
    const encode = (plan) => {
      if (plan === null || typeof plan !== 'object') return plan ?? null
      const out = toSnake(plan)
      if (out.rationale === undefined) out.rationale = ''
      return out
    }
    this._native.addPlanner(name, wrapCallback(fn, decode, encode))
    return this
  }

  /**
   * Runs a pattern to the end. Rejects only for invalid requests
   * (`InvalidRequestError`); a run that started resolves with its status and
   * error. With `throwOnFailure: true` a run that did not complete rejects
   * with the matching `OrchestraError` (its `result` attached). With `signal`
   * the run is cancelled when the signal aborts.
   */
  async run(pattern, task, opts = {}) {
    const request = buildRequest(pattern, task, opts)
    let result
    if (opts.signal) {
      result = await this._runWithSignal(request, opts.signal)
    } else {
      // The run is driven on this thread and calls JS agents directly; it
      // starts on the next microtask, so no agent runs inside this call.
      await undefined
      let json
      try {
        json = await this._native.run(request)
      } catch (e) {
        throw fromNative(e)
      }
      result = toCamel(JSON.parse(json))
    }
    if (failed(result, opts.throwOnFailure)) {
      throw fromInfo(result.error ?? { code: result.status, message: `run ended ${result.status}` }, { result })
    }
    return result
  }

  /**
   * Registers a person as a participant: each of their turns pauses the run
   * (`input_requested`, kind `human`) until it is resumed with their answer,
   * which becomes their message: text, or `{ content, data? }`. `prompt` is
   * what they are asked (default: the step's instruction).
   */
  addHuman(name, { description = '', prompt } = {}) {
    if (typeof name !== 'string' || name === '') throw new TypeError('agent name must be a non-empty string')
    this._native.addHuman(name, String(description), prompt === undefined || prompt === null ? null : String(prompt))
    return this
  }

  /**
   * Resumes a run paused for input with the person's `answer` (any JSON
   * value) and runs it to its end, or to its next pause. The answer goes to
   * the step that asked (`input.answer`); recorded steps are not run again.
   * Without an answer, continues a run whose process died. Rejects with
   * `InvalidAnswerError` (the run keeps waiting), `RunStateError` (not
   * waiting: finished, answered already, or an answer is missing),
   * `RunNotFoundError` or `InputExpiredError`. A denied approval ends the
   * run failed (`error.code === 'approval_denied'`; with `throwOnFailure`
   * it rejects with `ApprovalDeniedError`).
   */
  async resume(runId, answer, opts = {}) {
    if (typeof runId !== 'string') throw new TypeError('runId must be a string')
    let json
    try {
      json = await this._native.resume(runId, encodeAnswer(answer))
    } catch (e) {
      throw fromNative(e)
    }
    const result = toCamel(JSON.parse(json))
    if (failed(result, opts.throwOnFailure)) {
      throw fromInfo(result.error ?? { code: result.status, message: `run ended ${result.status}` }, { result })
    }
    return result
  }

  /**
   * `resume()` as an event stream, starting with `run_resumed`. The errors
   * `resume()` rejects with are thrown by the first iteration; `sessionId`
   * is known once the first event arrived.
   */
  resumeStream(runId, answer) {
    if (typeof runId !== 'string') throw new TypeError('runId must be a string')
    const pending = new PendingStream(this._native.resumeStream(runId, encodeAnswer(answer)), runId)
    const stream = new RunStream(pending)
    pending._ready.then(
      (handle) => {
        stream.sessionId = handle.sessionId
      },
      () => {},
    )
    return stream
  }

  /** The stored record of a run (paused runs included, with their `input`); null when unknown. */
  async getRun(runId) {
    let json
    try {
      json = await this._native.getRun(runId)
    } catch (e) {
      throw fromNative(e)
    }
    return json === null ? null : toCamel(JSON.parse(json))
  }

  /**
   * Cancels a run in flight here, or a run waiting for input (recorded as
   * cancelled; it can no longer be resumed). False otherwise.
   */
  async cancelRun(runId) {
    try {
      return await this._native.cancelRun(runId)
    } catch (e) {
      throw fromNative(e)
    }
  }

  async _runWithSignal(request, signal) {
    let handle
    try {
      handle = this._native.stream(request)
    } catch (e) {
      throw fromNative(e)
    }
    const stream = new RunStream(handle)
    const onAbort = () => stream.cancel()
    if (signal.aborted) stream.cancel()
    else signal.addEventListener('abort', onAbort, { once: true })
    try {
      return await stream.result()
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  /**
   * Starts a run and returns its events as an async iterator. Throws
   * `InvalidRequestError` at once for an invalid request.
   */
  stream(pattern, task, opts = {}) {
    const request = buildRequest(pattern, task, opts)
    let handle
    try {
      handle = this._native.stream(request)
    } catch (e) {
      throw fromNative(e)
    }
    const stream = new RunStream(handle)
    const signal = opts.signal
    if (signal) {
      if (signal.aborted) stream.cancel()
      else {
        const onAbort = () => stream.cancel()
        signal.addEventListener('abort', onAbort, { once: true })
        stream._onDone = () => signal.removeEventListener('abort', onAbort)
      }
    }
    return stream
  }

  /** Checks a request without running it; throws `InvalidRequestError`. */
  validate(pattern, task, opts = {}) {
    try {
      this._native.validate(buildRequest(pattern, task, opts))
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** The session, or null when unknown. */
  async getSession(sessionId) {
    let json
    try {
      json = await this._native.getSession(sessionId)
    } catch (e) {
      throw fromNative(e)
    }
    return json === null ? null : toCamel(JSON.parse(json))
  }

  /** Deletes a session; false if there was none. */
  async deleteSession(sessionId) {
    try {
      return await this._native.deleteSession(sessionId)
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** Session summaries, most recently updated first. */
  async listSessions({ offset = 0, limit = 50 } = {}) {
    try {
      return toCamel(JSON.parse(await this._native.listSessions(offset, limit)))
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** Cancels a run in flight in this process; false if it is not running here. */
  cancel(runId) {
    return this._native.cancel(runId)
  }

  /**
   * Asks a run in flight to stop cleanly at its next step boundary: the run
   * completes with what it has and `result.termination` is
   * `stopped: <reason>`. False if it is not running here.
   */
  stop(runId, reason = 'requested') {
    if (typeof runId !== 'string') throw new TypeError('runId must be a string')
    return this._native.stop(runId, String(reason))
  }

  /**
   * Replays a recorded run (a `RunResult`, camelCase or the core's JSON) as an
   * event stream, answering every agent step from the record: no agent is
   * called, and the events keep the original run and session ids.
   */
  replay(result) {
    if (result === null || typeof result !== 'object') throw new TypeError('replay needs a run result')
    let handle
    try {
      handle = this._native.replay(JSON.stringify(toSnake(result)))
    } catch (e) {
      throw fromNative(e)
    }
    return new RunStream(handle)
  }

  /** Number of runs in flight. */
  get activeRuns() {
    return this._native.activeRuns()
  }

  /** "memory" or "redis". */
  get storeKind() {
    return this._native.storeKind()
  }

  /** The five pattern names. */
  static get patterns() {
    return [...PATTERNS]
  }
}

/** The native callback of an agent function (also used by `serveAgent`). */
function wrapAgent(fn) {
  return wrapCallback(fn, decodeInput, encodeOutput)
}

module.exports = { Orchestrator, RunStream, toEvent, PATTERNS, wrapAgent }
