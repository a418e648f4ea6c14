'use strict'
// Session stores an Orchestrator can be built on.

const native = require('./native')
const { fromNative } = require('./errors')

/** Sessions in process memory (the default). */
class MemoryStore {
  constructor({ ttlMs, maxSessions } = {}) {
    this._native = native.NativeStore.memory(ttlMs ?? null, maxSessions ?? null)
  }

  get kind() {
    return 'memory'
  }
}

/**
 * Sessions in Redis, shared by every process that uses the same URL and
 * prefix. The connection is made on first use; `await store.ping()` checks it.
 */
class RedisStore {
  constructor(url, { prefix, ttlMs, connectTimeoutMs, responseTimeoutMs } = {}) {
    if (typeof native.NativeStore.redis !== 'function') {
      throw new Error('orchestra-sdk was built without Redis support')
    }
    try {
      this._native = native.NativeStore.redis(
        url,
        prefix ?? null,
        ttlMs ?? null,
        connectTimeoutMs ?? null,
        responseTimeoutMs ?? null,
      )
    } catch (e) {
      throw fromNative(e)
    }
    this.url = url
    this.prefix = prefix ?? 'orchestra'
  }

  get kind() {
    return 'redis'
  }

  /** Resolves when Redis answers; rejects with `StoreError` otherwise. */
  async ping() {
    try {
      await this._native.ping()
    } catch (e) {
      throw fromNative(e)
    }
  }
}

module.exports = { MemoryStore, RedisStore }
