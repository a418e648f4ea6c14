//! HTTP handlers, one module per resource.

pub mod agents;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod orchestrate;
pub mod patterns;
pub mod runs;
pub mod schemas;
pub mod sessions;
pub mod ui;
