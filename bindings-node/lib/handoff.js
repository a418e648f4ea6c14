'use strict'

/** Returned by an agent to pass control to another agent (handoff pattern). */
class Handoff {
  constructor(to, reason = '') {
    if (typeof to !== 'string' || to.length === 0) {
      throw new TypeError('Handoff: `to` must be the name of an agent')
    }
    this.to = to
    this.reason = String(reason ?? '')
  }

  toJSON() {
    return { to: this.to, reason: this.reason }
  }
}

module.exports = { Handoff }
