//! The same run gives the same event JSON from Rust, Python, Node and REST.
//!
//! `tests/fixtures/events-golden.jsonl` holds the events of one fixed run: a
//! sequential run of `demo_researcher` then `demo_writer` on the task
//! "tides", both answering fixed text with fixed usage (the server's demo
//! agents answer exactly this, so the REST test runs them). Each line is one
//! event, normalized the same way in every language:
//!
//! - `run_id`, `session_id` → `"<id>"`;
//! - `timestamp`, `created_at`, `started_at`, `finished_at`, `updated_at` → `"<time>"`;
//! - `duration_ms` → `0`;
//! - object keys sorted, compact JSON (no spaces), UTF-8 unescaped.
//!
//! The same comparison runs in bindings-python/tests/test_golden_events.py,
//! bindings-node/test/golden-events.test.mjs and
//! orchestra-server/tests/golden_events.rs. After an intended change of the
//! event format, regenerate the file with
//! `ORCHESTRA_UPDATE_GOLDEN=1 cargo test -p orchestra-core --test golden_events`.

use futures::StreamExt;
use orchestra_core::{AgentOutput, FnAgent, Orchestrator, RunRequest, Usage};
use serde_json::{Map, Value};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/events-golden.jsonl"
);

const RESEARCH: &str = "Research notes on 'tides': (1) background and definitions; (2) two \
                        well-established facts; (3) one open question worth a follow-up.";

/// An event as one normalized line.
fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                let v = &map[k];
                let v = match k.as_str() {
                    "run_id" | "session_id" => Value::from("<id>"),
                    "timestamp" | "created_at" | "started_at" | "finished_at" | "updated_at" => {
                        Value::from("<time>")
                    }
                    "duration_ms" => Value::from(0),
                    _ => normalize(v),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn the_event_json_of_a_fixed_run_matches_the_golden_file() {
    let orch = Orchestrator::new();
    orch.register(FnAgent::new(
        "demo_researcher",
        "research notes",
        |_, _| async { AgentOutput::text(RESEARCH).with_usage(Usage::new(19, 19)) },
    ));
    orch.register(FnAgent::new("demo_writer", "drafts", |_, _| async {
        AgentOutput::text(format!("Draft: a short article built from: {RESEARCH}"))
            .with_usage(Usage::new(25, 25))
    }));
    let events: Vec<_> = orch
        .stream(RunRequest::new("sequential", "tides").agents(["demo_researcher", "demo_writer"]))
        .unwrap()
        .collect()
        .await;
    let mut lines = String::new();
    for event in &events {
        let json = serde_json::to_value(event).unwrap();
        lines.push_str(&serde_json::to_string(&normalize(&json)).unwrap());
        lines.push('\n');
    }
    if std::env::var_os("ORCHESTRA_UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &lines).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("the golden file");
    assert_eq!(lines, golden, "events differ from {GOLDEN}");
}
