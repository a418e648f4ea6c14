//! Agents that live outside the process: generic HTTP agent services,
//! OpenAI-compatible chat models, and A2A peers (feature `http-agents`), and
//! agents served by workers behind a queue (features `redis` / `nats`).

#[cfg(feature = "http-agents")]
pub mod a2a;
#[cfg(feature = "http-agents")]
pub mod http;
#[cfg(feature = "http-agents")]
pub mod openai;
#[cfg(any(feature = "redis", feature = "nats"))]
pub mod queue;
#[cfg(any(feature = "http-agents", feature = "redis", feature = "nats"))]
pub(crate) mod wire;
