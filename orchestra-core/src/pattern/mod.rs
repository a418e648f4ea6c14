//! The [`Pattern`] trait and the five built-in patterns.
//!
//! | pattern | module | options |
//! |---|---|---|
//! | `sequential` | [`sequential`] | [`SequentialOptions`] |
//! | `concurrent` | [`concurrent`] | [`ConcurrentOptions`] |
//! | `handoff` | [`handoff`] | [`HandoffOptions`] |
//! | `group_chat` | [`group_chat`] | [`GroupChatOptions`] |
//! | `dynamic` | [`dynamic`] | [`DynamicOptions`] |
//!
//! Patterns are built from their name and JSON options, so a REST body, a
//! Python dict and a Rust `json!` all configure them the same way:
//!
//! ```
//! use orchestra_core::pattern::{build, catalog};
//! use orchestra_core::context::Components;
//! let p = build("concurrent", &serde_json::json!({"aggregator": "vote"}), &Components::default()).unwrap();
//! assert_eq!(p.name(), "concurrent");
//! let err = build("concurrent", &serde_json::json!({"aggregator": "loudest"}), &Components::default()).err().unwrap();
//! assert_eq!(err.code(), "invalid_options");
//! assert_eq!(catalog().len(), 5);
//! ```

pub mod concurrent;
pub mod dynamic;
pub mod group_chat;
pub mod handoff;
pub mod sequential;

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

pub use concurrent::{Aggregator, Concurrent, ConcurrentOptions, FailurePolicy};
pub use dynamic::{
    Dynamic, DynamicOptions, HeuristicPlanner, Ledger, LedgerEntry, Plan, PlanRequest, PlanStep,
    Planner,
};
pub use group_chat::{
    ChatState, FnManager, GroupChat, GroupChatManager, GroupChatOptions, OnAgentFailure,
    RoundRobinManager, SpeakerChoice, Termination,
};
pub use handoff::{HandoffOptions, HandoffPattern};
pub use sequential::{Sequential, SequentialOptions};

use crate::{
    context::{Components, RunContext, Scope},
    error::OrchestraError,
    policy::RunOptions,
};

/// A way of coordinating agents.
///
/// Implemented by the five built-in patterns; users may add their own and
/// run them with `Orchestrator::run_pattern`. `run` receives a shared
/// [`RunContext`] (call agents through [`RunContext::invoke`]) and the
/// [`Scope`] to work on; it must return promptly once the context's
/// cancellation token fires (dropping the future is also allowed).
#[async_trait]
pub trait Pattern: Send + Sync {
    /// The pattern's name ("sequential", "concurrent", …).
    fn name(&self) -> &'static str;
    async fn run(&self, ctx: &RunContext, scope: Scope) -> Result<PatternOutput, OrchestraError>;
    /// Whether the pattern may run with no agents listed (then it gets all registered agents).
    fn agents_optional(&self) -> bool {
        false
    }
    /// Checks the options against the run's agents before anything runs,
    /// so that bad input fails fast with a typed error.
    fn validate(&self, _scope: &Scope, _components: &Components) -> Result<(), OrchestraError> {
        Ok(())
    }
}

/// What a pattern produces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatternOutput {
    pub content: String,
    pub data: Option<Value>,
    /// Why the pattern stopped, if a condition ended it.
    pub termination: Option<String>,
    /// Some agents failed and the output is built from the others.
    pub partial: bool,
}

impl PatternOutput {
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }
}

/// The names of the built-in patterns.
pub const PATTERN_NAMES: [&str; 5] = [
    sequential::NAME,
    concurrent::NAME,
    handoff::NAME,
    group_chat::NAME,
    dynamic::NAME,
];

/// Builds a built-in pattern from its name and JSON options. The common run
/// options (`timeout_ms`, `retry`, …) may be present and are ignored here.
pub fn build(
    name: &str,
    options: &Value,
    components: &Components,
) -> Result<Arc<dyn Pattern>, OrchestraError> {
    Ok(match name {
        sequential::NAME => Arc::new(Sequential::new(parse_options(options)?)),
        concurrent::NAME => Arc::new(Concurrent::new(parse_options(options)?)),
        handoff::NAME => Arc::new(HandoffPattern::new(parse_options(options)?)),
        group_chat::NAME => Arc::new(GroupChat::from_options(
            parse_options(options)?,
            components,
        )?),
        dynamic::NAME => Arc::new(Dynamic::from_options(parse_options(options)?, components)?),
        other => {
            return Err(OrchestraError::UnknownPattern {
                name: other.to_owned(),
            });
        }
    })
}

/// Parses the common run options out of a request's `options`.
pub fn parse_run_options(options: &Value) -> Result<RunOptions, OrchestraError> {
    let common: Map<String, Value> = object(options)?
        .iter()
        .filter(|(k, _)| RunOptions::KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    deserialize(Value::Object(common))
}

/// Parses a pattern's own options, rejecting unknown keys (after removing
/// the common keys) so that typos are reported with the field named.
pub fn parse_options<T: DeserializeOwned>(options: &Value) -> Result<T, OrchestraError> {
    let own: Map<String, Value> = object(options)?
        .iter()
        .filter(|(k, _)| !RunOptions::KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    deserialize(Value::Object(own))
}

fn object(options: &Value) -> Result<&Map<String, Value>, OrchestraError> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match options {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(EMPTY.get_or_init(Map::new)),
        _ => Err(OrchestraError::InvalidOptions {
            field: "options".into(),
            message: "must be a JSON object".into(),
        }),
    }
}

fn deserialize<T: DeserializeOwned>(v: Value) -> Result<T, OrchestraError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        OrchestraError::InvalidOptions {
            field: if path == "." {
                "options".into()
            } else {
                format!("options.{path}")
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// A pattern's name, description and options schema (for `GET /patterns`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatternInfo {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema of the pattern's options, common run options included.
    pub options_schema: Value,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct WithCommon<T> {
    #[serde(flatten)]
    common: RunOptions,
    #[serde(flatten)]
    own: T,
}

fn info<T: JsonSchema>(name: &'static str, description: &'static str) -> PatternInfo {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<WithCommon<T>>();
    let mut options_schema = schema.to_value();
    if let Some(o) = options_schema.as_object_mut() {
        o.insert("title".into(), Value::String(format!("{name} options")));
    }
    PatternInfo {
        name,
        description,
        options_schema,
    }
}

/// The five built-in patterns.
pub fn catalog() -> Vec<PatternInfo> {
    vec![
        info::<SequentialOptions>(sequential::NAME, sequential::DESCRIPTION),
        info::<ConcurrentOptions>(concurrent::NAME, concurrent::DESCRIPTION),
        info::<HandoffOptions>(handoff::NAME, handoff::DESCRIPTION),
        info::<GroupChatOptions>(group_chat::NAME, group_chat::DESCRIPTION),
        info::<DynamicOptions>(dynamic::NAME, dynamic::DESCRIPTION),
    ]
}

/// Lower-cases, trims, collapses whitespace and drops trailing punctuation,
/// so that "Yes." and " yes" count as the same answer.
pub(crate) fn normalize(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .trim_end_matches(|c: char| c.is_ascii_punctuation())
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_pattern_options_name_the_field() {
        let e = build(
            "sequential",
            &serde_json::json!({"timeout_ms": 5, "ordr": 1}),
            &Components::default(),
        )
        .err()
        .unwrap();
        assert_eq!(e.code(), "invalid_options");
        assert!(e.to_string().contains("ordr"), "{e}");
    }

    #[test]
    fn wrong_option_types_name_the_path() {
        let e = parse_run_options(&serde_json::json!({"retry": {"max_retries": "x"}})).unwrap_err();
        assert!(e.to_string().contains("options.retry.max_retries"), "{e}");
    }

    #[test]
    fn every_schema_lists_the_common_options() {
        for p in catalog() {
            let props = &p.options_schema["properties"];
            assert!(props.get("timeout_ms").is_some(), "{}", p.name);
        }
        let c = &catalog()[1].options_schema["properties"];
        assert!(c.get("aggregator").is_some());
    }

    #[test]
    fn normalize_ignores_case_space_and_final_punctuation() {
        assert_eq!(normalize("  Yes.  "), "yes");
        assert_eq!(normalize("Blue   sky!"), "blue sky");
    }
}
