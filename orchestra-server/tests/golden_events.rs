//! The REST stream of a fixed run gives the event JSON of
//! orchestra-core/tests/fixtures/events-golden.jsonl (see
//! orchestra-core/tests/golden_events.rs for the run and the normalization):
//! the server's demo agents answer exactly the fixed text and usage the other
//! languages' agents do.

mod common;

use common::*;
use serde_json::{Map, Value, json};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../orchestra-core/tests/fixtures/events-golden.jsonl"
);

fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                let v = match k.as_str() {
                    "run_id" | "session_id" => Value::from("<id>"),
                    "timestamp" | "created_at" | "started_at" | "finished_at" | "updated_at" => {
                        Value::from("<time>")
                    }
                    "duration_ms" => Value::from(0),
                    _ => normalize(&map[k]),
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
async fn the_rest_stream_of_a_fixed_run_matches_the_golden_file() {
    let server = Server::start("").await;
    let r = reqwest::Client::new()
        .post(server.url("/orchestrate/stream"))
        .json(&json!({"pattern": "sequential", "task": "tides",
                      "agents": ["demo_researcher", "demo_writer"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut lines = String::new();
    for event in SseReader::new(r).collect().await {
        lines.push_str(&serde_json::to_string(&normalize(&event.data)).unwrap());
        lines.push('\n');
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("the golden file");
    assert_eq!(lines, golden, "events differ from {GOLDEN}");
}
