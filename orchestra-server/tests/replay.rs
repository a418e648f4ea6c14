//! `orchestra-server replay`: a run recorded through the REST API, replayed
//! offline by the real binary, gives the events the live stream gave.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::*;
use serde_json::{Value, json};

fn temp_file(name: &str, body: &Value) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "orchestra-replay-test-{}-{name}.json",
        std::process::id()
    ));
    std::fs::write(&path, serde_json::to_vec_pretty(body).unwrap()).unwrap();
    path
}

fn replay(file: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestra-server"))
        .arg("replay")
        .arg(file)
        .args(args)
        .output()
        .expect("run orchestra-server replay")
}

/// The JSON lines a replay printed.
fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_recorded_run_replays_offline_with_the_live_events() {
    let server = Server::start("").await;
    let c = reqwest::Client::new();
    let request = |session: &str| {
        json!({"pattern": "handoff", "task": "Where is my refund?",
               "agents": ["demo_triage", "demo_billing"], "session_id": session})
    };
    let (status, record) = post_json(&c, &server.url("/orchestrate"), request("replay-rec")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["status"], "completed");
    let r = c
        .post(server.url("/orchestrate/stream"))
        .json(&request("replay-live"))
        .send()
        .await
        .unwrap();
    let live: Vec<Value> = SseReader::new(r)
        .collect()
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    let file = temp_file("record", &record);

    let out = replay(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let replayed = lines(&out);
    assert_eq!(types(&replayed), types(&live));
    assert!(types(&replayed).contains(&"handoff".to_owned()));
    let last = replayed.last().unwrap();
    assert_eq!(last["type"], "run_completed");
    assert_eq!(last["result"]["output"], record["output"]);
    assert_eq!(
        last["result"]["output"],
        live.last().unwrap()["result"]["output"]
    );
    // The replay keeps the record's ids, so its events line up with the original's.
    assert!(replayed.iter().all(|e| e["run_id"] == record["run_id"]));
    for (a, b) in replayed.iter().zip(&live) {
        if a["type"] == "agent_completed" {
            assert_eq!(a["message"]["content"], b["message"]["content"]);
            assert_eq!(a["usage"], b["usage"]);
        }
    }

    // A whole session, with the run chosen by --run.
    let run_id = record["run_id"].as_str().unwrap();
    let (_, session) = get_json(&c, &server.url("/sessions/replay-rec")).await;
    let session_file = temp_file("session", &session);
    let out = replay(&session_file, &["--run", run_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(types(&lines(&out)), types(&live));
    // A single-run session needs no --run.
    assert!(replay(&session_file, &[]).status.success());

    // A run the session does not have.
    let out = replay(&session_file, &["--run", "no-such-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no run no-such-run"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    // Several runs: --run is required.
    let (status, second) = post_json(&c, &server.url("/orchestrate"), request("replay-rec")).await;
    assert_eq!(status, 200, "{second}");
    let (_, session) = get_json(&c, &server.url("/sessions/replay-rec")).await;
    let two_runs = temp_file("two-runs", &session);
    let out = replay(&two_runs, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--run"), "{}", stderr(&out));
    let out = replay(&two_runs, &["--run", second["run_id"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A record whose steps are gone cannot end as recorded: the replay
    // calls no agent, so it fails, and says so.
    let mut broken = record.clone();
    broken["steps"] = json!([]);
    let broken_file = temp_file("broken", &broken);
    let out = replay(&broken_file, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("ended failed"), "{}", stderr(&out));
    assert_eq!(lines(&out).last().unwrap()["type"], "run_failed");

    // Unreadable files.
    let out = replay(Path::new("/nonexistent/record.json"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    let not_json = std::env::temp_dir().join(format!(
        "orchestra-replay-test-{}-bad.json",
        std::process::id()
    ));
    std::fs::write(&not_json, "{ not json").unwrap();
    let out = replay(&not_json, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not JSON"), "{}", stderr(&out));
    let not_a_run = temp_file("not-a-run", &json!({"hello": "world"}));
    let out = replay(&not_a_run, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a run record"),
        "{}",
        stderr(&out)
    );

    for f in [
        file,
        session_file,
        two_runs,
        broken_file,
        not_json,
        not_a_run,
    ] {
        let _ = std::fs::remove_file(f);
    }
}
