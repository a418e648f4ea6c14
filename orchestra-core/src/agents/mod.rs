//! Agents that live outside the process: generic HTTP agent services,
//! OpenAI-compatible chat models, and A2A peers (feature `http-agents`).

#[cfg(feature = "http-agents")]
pub mod a2a;
#[cfg(feature = "http-agents")]
pub mod http;
#[cfg(feature = "http-agents")]
pub mod openai;
