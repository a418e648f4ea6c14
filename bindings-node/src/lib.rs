//! Native half of the npm package `orchestra-sdk`.
//!
//! The JavaScript facade in `lib/` is the public API; this addon exposes a
//! small JSON-string interface to it:
//! - [`orchestrator`]: `NativeOrchestrator` (run, stream, sessions, registry),
//! - [`stream`]: `NativeRunStream`, the event stream behind the async iterator,
//! - [`store`]: `NativeStore`, memory and Redis session stores,
//! - [`components`]: JS functions as core agents, group chat managers, planners,
//! - `remote`: the core's HTTP, OpenAI-compatible and A2A agents, LLM
//!   managers and planners (feature `http-agents`),
//! - `queue`: queue agents and `serveAgent` workers over Redis Streams or
//!   NATS (features `redis` / `nats`),
//! - [`callback`]: the one way Rust calls JavaScript,
//! - [`local`]: runs driven on the JS thread, so JS agents are called
//!   without thread hops,
//! - [`error`]: the one place errors are converted.
//!
//! No pattern logic lives here: every run is the core's.

/// A run allocates many small, short-lived objects (messages, step records,
/// JSON text); mimalloc serves them faster than the system allocator. The
/// addon is loaded with `dlopen`, hence its local-dynamic TLS model.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod callback;
mod components;
mod error;
mod local;
mod orchestrator;
#[cfg(any(feature = "redis", feature = "nats"))]
mod queue;
#[cfg(feature = "http-agents")]
mod remote;
mod store;
mod stream;

use napi_derive::napi;

/// The marker that prefixes error envelopes (see `error.rs`).
#[napi]
pub fn error_marker() -> String {
    error::MARKER.to_owned()
}

/// The core's event schema version.
#[napi]
pub fn event_schema_version() -> u32 {
    orchestra_core::EVENT_SCHEMA_VERSION
}
