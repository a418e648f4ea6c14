'use strict'

/**
 * Returned by an agent to pass control to another agent (handoff pattern).
 * `payload` is structured data for the target (any JSON value), checked
 * against the run's `payloadSchemas` for it before it runs; the target reads
 * the handoff that made it active as `input.handoff`. Return an array of
 * handoffs to ask for several agents in one turn (`parallelHandoffs`).
 */
class Handoff {
  constructor(to, reason = '', { payload } = {}) {
    if (typeof to !== 'string' || to.length === 0) {
      throw new TypeError('Handoff: `to` must be the name of an agent')
    }
    this.to = to
    this.reason = String(reason ?? '')
    if (payload !== undefined && payload !== null) this.payload = payload
  }

  toJSON() {
    const h = { to: this.to, reason: this.reason }
    if (this.payload !== undefined && this.payload !== null) h.payload = this.payload
    return h
  }
}

module.exports = { Handoff }
