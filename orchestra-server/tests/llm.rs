//! The real `orchestra-server` binary with LLM and A2A agents, an LLM group
//! chat manager and an LLM planner from its configuration, against scripted
//! OpenAI-compatible and A2A servers on 127.0.0.1.

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::{
    Server, SseReader, get_json, get_text, post_json,
    scripted::{Reply, Scripted, completed_task, completion, rpc_result, streamed_text, v03_card},
};
use serde_json::{Value, json};

const KEY_VAR: &str = "ORCHESTRA_TEST_LLM_KEY";

struct Fixture {
    llm: Scripted,
    peer: Scripted,
    manager: Scripted,
    planner: Scripted,
    server: Server,
}

fn planner_answer() -> Value {
    let answer = json!({
        "task_ledger": {"facts": ["tides are lunar"], "plan": ["ask the peer"]},
        "progress_ledger": {
            "is_request_satisfied": false, "is_progress_being_made": true, "is_in_loop": false,
            "next_speaker": "peer", "instruction": "explain tides", "reason": "the peer knows"
        },
        "steps": [{"pattern": "sequential", "agents": ["peer"], "task": "explain tides"}]
    });
    completion(&answer.to_string(), 40, 20)
}

async fn fixture() -> Fixture {
    let llm = Scripted::openai(|_, _| streamed_text(&["Tides ", "are ", "lunar."], 5, 3)).await;
    let peer = Scripted::a2a(
        v03_card("peer", "an A2A peer that knows the sea"),
        |_, req| {
            Reply::Json(rpc_result(
                req,
                completed_task("t-1", "The moon drives tides."),
            ))
        },
    )
    .await;
    let manager = Scripted::openai(|_, _| {
        Reply::Json(completion(
            r#"{"next": "peer", "reason": "the peer knows the sea", "terminate": false}"#,
            7,
            2,
        ))
    })
    .await;
    let planner = Scripted::openai(|_, _| Reply::Json(planner_answer())).await;
    let config = format!(
        r#"
[[agents]]
name = "assistant"
kind = "openai"
description = "answers general questions"
base_url = "{llm}"
model = "test-model"
api_key_env = "{KEY_VAR}"
system_prompt = "You are concise."
temperature = 0.1

[[agents]]
name = "peer"
kind = "a2a"
url = "{peer}"

[[managers]]
name = "chooser"
kind = "llm"
model = {{ base_url = "{manager}", model = "m", stream = false }}

[[planners]]
name = "ledger"
model = {{ base_url = "{planner}", model = "m", stream = false }}

# Per million tokens: 5 prompt + 3 completion tokens cost 5 000 + 6 000 micros.
[prices."test-model"]
prompt = 1000.0
completion = 2000.0
"#,
        llm = llm.base_url(),
        peer = peer.url,
        manager = manager.base_url(),
        planner = planner.base_url(),
    );
    let server = Server::start_with_env(&config, &[(KEY_VAR, "sk-test")]).await;
    Fixture {
        llm,
        peer,
        manager,
        planner,
        server,
    }
}

#[tokio::test]
async fn openai_and_a2a_agents_from_the_config_run_and_stream_through_the_server() {
    let f = fixture().await;
    let c = reqwest::Client::new();
    let (_, agents) = get_json(&c, &f.server.url("/agents")).await;
    let agents = agents["agents"].as_array().unwrap();
    let kinds: Vec<(&str, &str, &str)> = agents
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap(),
                a["kind"].as_str().unwrap(),
                a["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("assistant", "openai", "config"), ("peer", "a2a", "config")]
    );
    // The A2A agent took its description from its card.
    assert_eq!(agents[1]["description"], "an A2A peer that knows the sea");

    let r = c
        .post(f.server.url("/orchestrate/stream"))
        .json(
            &json!({"pattern": "sequential", "task": "Why are there tides?",
                      "agents": ["assistant", "peer"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = SseReader::new(r).collect().await;
    let deltas: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "agent_delta")
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, ["Tides ", "are ", "lunar."]);
    let last = events.last().unwrap();
    assert_eq!(last.event, "run_completed");
    let result = &last.data["result"];
    assert_eq!(result["steps"][0]["output"]["content"], "Tides are lunar.");
    assert_eq!(result["output"], "The moon drives tides.");
    assert_eq!(result["usage"]["total_tokens"], 8);
    // The price table of the config priced the LLM agent's tokens.
    assert_eq!(result["usage"]["cost_micros"], 11_000);
    assert_eq!(result["steps"][0]["output"]["usage"]["cost_micros"], 11_000);

    // The LLM got the key from the environment, the model, the system prompt and the task.
    assert_eq!(
        f.llm.header(0, "authorization").as_deref(),
        Some("Bearer sk-test")
    );
    let body = &f.llm.bodies()[0];
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], "You are concise.");
    assert!(body.to_string().contains("Why are there tides?"), "{body}");
    // The peer got a JSON-RPC message/send with the previous answer in it.
    let rpc = &f.peer.bodies()[0];
    assert_eq!(rpc["method"], "message/send");
    assert!(rpc.to_string().contains("Tides are lunar."), "{rpc}");
}

#[tokio::test]
async fn a_configured_llm_manager_and_planner_are_chosen_by_name_over_rest() {
    let f = fixture().await;
    let c = reqwest::Client::new();

    // Round-robin would start with "assistant"; the manager picks "peer".
    let (status, r) = post_json(
        &c,
        &f.server.url("/orchestrate"),
        json!({"pattern": "group_chat", "task": "Explain tides", "agents": ["assistant", "peer"],
               "options": {"manager": "chooser", "max_rounds": 1}}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["steps"][0]["agent"], "peer");
    // The peer reports no tokens: the run's usage is the manager's.
    let asked_times = f.manager.bodies().len() as u64;
    assert!(asked_times >= 1);
    assert_eq!(r["usage"]["prompt_tokens"], 7 * asked_times, "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 2 * asked_times, "{r}");
    let asked = &f.manager.bodies()[0];
    assert!(
        asked.to_string().contains("an A2A peer that knows the sea"),
        "{asked}"
    );

    let r = c
        .post(f.server.url("/orchestrate/stream"))
        .json(
            &json!({"pattern": "dynamic", "task": "Explain tides", "agents": ["assistant", "peer"],
                      "options": {"planner": "ledger"}}),
        )
        .send()
        .await
        .unwrap();
    let events = SseReader::new(r).collect().await;
    assert!(events.iter().any(|e| e.event == "plan_created"));
    assert!(
        !events.iter().any(|e| e.event == "fallback"),
        "the LLM plan was used"
    );
    let result = &events.last().unwrap().data["result"];
    assert_eq!(result["status"], "completed", "{result}");
    let agents: Vec<&str> = result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["peer"]);
    assert!(!f.planner.bodies().is_empty());
    let plans = f.planner.bodies().len() as u64;
    assert_eq!(result["usage"]["prompt_tokens"], 40 * plans, "{result}");
    assert_eq!(result["usage"]["completion_tokens"], 20 * plans, "{result}");
    let metrics = get_text(&c, &f.server.url("/metrics")).await;
    for (pattern, kind, tokens) in [
        ("group_chat", "prompt", 7 * asked_times),
        ("dynamic", "completion", 20 * plans),
    ] {
        let found = metrics.lines().any(|l| {
            l.starts_with("orchestra_run_tokens_total{")
                && l.contains(&format!("pattern=\"{pattern}\""))
                && l.contains(&format!("kind=\"{kind}\""))
                && l.ends_with(&format!(" {tokens}"))
        });
        assert!(found, "no {pattern} {kind} tokens = {tokens} in\n{metrics}");
    }
    assert!(
        f.llm.bodies().is_empty(),
        "the planner did not pick the assistant"
    );

    // Unknown names are refused before anything runs.
    let (status, body) = post_json(
        &c,
        &f.server.url("/orchestrate"),
        json!({"pattern": "group_chat", "task": "x", "agents": ["assistant", "peer"],
               "options": {"manager": "nobody"}}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_options"))
    );
}

#[tokio::test]
async fn an_unset_api_key_variable_or_a_typo_stops_the_server_naming_it() {
    let dir = std::env::temp_dir();
    let cases = [
        (
            "[[agents]]\nname = \"a\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\napi_key_env = \"ORCHESTRA_TEST_SURELY_UNSET_KEY\"\n",
            "ORCHESTRA_TEST_SURELY_UNSET_KEY",
        ),
        (
            "[[agents]]\nname = \"a\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\ntemprature = 0.3\n",
            "temprature",
        ),
        (
            "[[managers]]\nname = \"m\"\nmodel = { base_url = \"http://127.0.0.1:9/v1\", model = \"m\", api_key_env = \"ORCHESTRA_TEST_SURELY_UNSET_KEY\" }\n",
            "ORCHESTRA_TEST_SURELY_UNSET_KEY",
        ),
        (
            "[[agents]]\nname = \"a\"\nkind = \"a2a\"\nurl = \"http://127.0.0.1:9\"\n",
            "agent card",
        ),
    ];
    for (i, (toml, expected)) in cases.iter().enumerate() {
        let path = dir.join(format!("orchestra-llm-bad-{}-{i}.toml", std::process::id()));
        std::fs::write(&path, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestra-server"))
            .arg("--config")
            .arg(&path)
            .arg("--bind")
            .arg("127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "case {i} did not exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(!status.success(), "case {i}");
        assert!(stderr.contains(expected), "case {i}: {stderr}");
    }
}
