//! The A2A client agent against a scripted A2A server on 127.0.0.1: agent
//! cards, JSON-RPC 2.0 in both protocol versions, SSE streams, task states.

mod fixtures_llm;

use fixtures_llm::*;
use futures::StreamExt;
use orchestra_core::{
    Agent, AgentContext, AgentInput, EventKind, OrchestrationEvent, Orchestrator, RunRequest,
    RunStatus,
    agents::a2a::{A2aAgent, A2aAgentConfig},
};
use serde_json::{Value, json};

fn v03_card(streaming: bool) -> impl FnOnce(&str) -> Value {
    move |base: &str| {
        json!({
            "name": "researcher", "description": "finds facts on the web",
            "url": format!("{base}/rpc"), "version": "1.0.0", "protocolVersion": "0.3.0",
            "preferredTransport": "JSONRPC",
            "capabilities": {"streaming": streaming},
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
            "skills": []
        })
    }
}

fn v1_card(base: &str) -> Value {
    json!({
        "name": "summarizer", "description": "summarizes documents",
        "supportedInterfaces": [
            {"url": format!("{base}/rpc"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
        "capabilities": {"streaming": true},
        "version": "2.0.0", "skills": []
    })
}

fn task(id: &str, state: &str, artifacts: Value) -> Value {
    json!({"kind": "task", "id": id, "contextId": "ctx-1",
           "status": {"state": state}, "artifacts": artifacts})
}

fn text_artifact(text: &str) -> Value {
    json!([{"artifactId": "a1", "parts": [{"kind": "text", "text": text}]}])
}

async fn connect(server: &Server) -> A2aAgent {
    A2aAgent::connect(A2aAgentConfig::new(&server.url))
        .await
        .unwrap()
}

async fn events(orch: &Orchestrator, req: RunRequest) -> Vec<OrchestrationEvent> {
    orch.stream(req).unwrap().collect().await
}

fn deltas(evs: &[OrchestrationEvent]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentDelta { delta, .. } => Some(delta.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_v0_3_agent_answers_through_message_send() {
    let server = Server::a2a(v03_card(false), |_, req| {
        Reply::Json(rpc_result(
            req,
            task("t-1", "completed", text_artifact("The moon drives tides.")),
        ))
    })
    .await;
    let agent = connect(&server).await;
    assert_eq!(agent.name(), "researcher");
    assert_eq!(agent.description(), "finds facts on the web");
    assert!(!agent.is_v1());
    let orch = Orchestrator::new();
    orch.register(agent);
    let r = orch
        .run(RunRequest::new("sequential", "Why tides?").agents(["researcher"]))
        .await
        .unwrap();
    assert_eq!(r.output.as_deref(), Some("The moon drives tides."));
    let data = r.steps[0].output.as_ref().unwrap().data.clone().unwrap();
    assert_eq!(data["a2a"]["state"], "completed");
    assert_eq!(data["a2a"]["task_id"], "t-1");
    let req = &server.rec.bodies()[0];
    assert_eq!(req["jsonrpc"], "2.0");
    assert_eq!(req["method"], "message/send");
    assert_eq!(req["params"]["configuration"]["blocking"], true);
    let msg = &req["params"]["message"];
    assert_eq!(msg["role"], "user");
    assert_eq!(msg["kind"], "message");
    assert_eq!(
        msg["parts"],
        json!([{"kind": "text", "text": "Why tides?"}])
    );
    assert!(msg["messageId"].as_str().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn a_v0_3_stream_turns_artifact_chunks_into_ordered_deltas() {
    let server = Server::a2a(v03_card(true), |_, req| {
        let ev = |result: Value| rpc_result(req, result).to_string();
        Reply::Sse(vec![
            ev(task("t-2", "submitted", json!([]))),
            ev(json!({"kind": "status-update", "taskId": "t-2", "contextId": "ctx-1",
                      "status": {"state": "working"}, "final": false})),
            ev(json!({"kind": "artifact-update", "taskId": "t-2", "contextId": "ctx-1",
                      "artifact": {"artifactId": "a1", "parts": [{"kind": "text", "text": "Tides follow "}]}})),
            ev(json!({"kind": "artifact-update", "taskId": "t-2", "contextId": "ctx-1", "append": true,
                      "lastChunk": true,
                      "artifact": {"artifactId": "a1", "parts": [{"kind": "text", "text": "the moon."}]}})),
            ev(json!({"kind": "status-update", "taskId": "t-2", "contextId": "ctx-1",
                      "status": {"state": "completed"}, "final": true})),
        ])
    })
    .await;
    let orch = Orchestrator::new();
    orch.register(connect(&server).await);
    let evs = events(
        &orch,
        RunRequest::new("sequential", "Why tides?").agents(["researcher"]),
    )
    .await;
    assert_eq!(deltas(&evs), vec!["Tides follow ", "the moon."]);
    let r = evs.last().and_then(|e| e.kind.result()).unwrap().clone();
    assert_eq!(r.output.as_deref(), Some("Tides follow the moon."));
    let data = r.steps[0].output.as_ref().unwrap().data.clone().unwrap();
    assert_eq!(
        data["a2a"]["states"],
        json!(["submitted", "working", "completed"])
    );
    assert_eq!(server.rec.bodies()[0]["method"], "message/stream");
    let accept = server.rec.headers.lock().unwrap()[0]["accept"].clone();
    assert_eq!(accept, "text/event-stream");
}

#[tokio::test]
async fn a_v1_card_is_spoken_to_with_send_streaming_message() {
    let server = Server::a2a(v1_card, |_, req| {
        let ev = |result: Value| rpc_result(req, result).to_string();
        Reply::Sse(vec![
            ev(json!({"task": {"id": "t-3", "contextId": "c-9", "status": {"state": "TASK_STATE_WORKING"}}})),
            ev(json!({"artifactUpdate": {"taskId": "t-3", "contextId": "c-9",
                      "artifact": {"artifactId": "s", "parts": [{"text": "Short "}]}}})),
            ev(json!({"artifactUpdate": {"taskId": "t-3", "contextId": "c-9", "append": true,
                      "artifact": {"artifactId": "s", "parts": [{"text": "summary."}]}}})),
            ev(json!({"statusUpdate": {"taskId": "t-3", "contextId": "c-9",
                      "status": {"state": "TASK_STATE_COMPLETED"}}})),
        ])
    })
    .await;
    let agent = connect(&server).await;
    assert!(agent.is_v1());
    let orch = Orchestrator::new();
    orch.register(agent);
    let evs = events(
        &orch,
        RunRequest::new("sequential", "Summarize").agents(["summarizer"]),
    )
    .await;
    assert_eq!(deltas(&evs), vec!["Short ", "summary."]);
    let r = evs.last().and_then(|e| e.kind.result()).unwrap().clone();
    assert_eq!(r.output.as_deref(), Some("Short summary."));
    let req = &server.rec.bodies()[0];
    assert_eq!(req["method"], "SendStreamingMessage");
    assert_eq!(req["params"]["message"]["role"], "ROLE_USER");
    assert_eq!(
        req["params"]["message"]["parts"],
        json!([{"text": "Summarize"}])
    );
    assert_eq!(server.rec.headers.lock().unwrap()[0]["a2a-version"], "1.0");
}

#[tokio::test]
async fn a_v1_send_message_can_answer_with_a_plain_message() {
    let card = |base: &str| {
        let mut c = v1_card(base);
        c["capabilities"]["streaming"] = json!(false);
        c
    };
    let server = Server::a2a(card, |_, req| {
        Reply::Json(rpc_result(
            req,
            json!({"message": {"messageId": "m1", "role": "ROLE_AGENT", "contextId": "c",
                               "parts": [{"text": "Done quickly."}, {"data": {"pages": 3}}]}}),
        ))
    })
    .await;
    let agent = connect(&server).await;
    let out = agent
        .invoke(
            AgentInput {
                task: "Summarize".into(),
                ..Default::default()
            },
            AgentContext::detached("summarizer"),
        )
        .await
        .unwrap();
    assert_eq!(out.content, "Done quickly.");
    assert_eq!(out.data.unwrap()["a2a"]["data"], json!([{"pages": 3}]));
    assert_eq!(server.rec.bodies()[0]["method"], "SendMessage");
}

#[tokio::test]
async fn task_states_map_to_answers_errors_and_follow_ups() {
    // 0: input-required; 1: the follow-up in the same session completes;
    // 2: working (then polled via tasks/get: 3 completes); 4: failed.
    let server = Server::a2a(v03_card(false), |n, req| {
        let result = match n {
            0 => json!({"kind": "task", "id": "t-in", "contextId": "ctx-7",
                        "status": {"state": "input-required", "message": {"kind": "message", "role": "agent",
                            "messageId": "q", "parts": [{"kind": "text", "text": "Which city?"}]}}}),
            1 => task("t-in", "completed", text_artifact("Oslo: 3°C")),
            2 => task("t-slow", "working", json!([])),
            3 => task("t-slow", "completed", text_artifact("slow but done")),
            _ => json!({"kind": "task", "id": "t-bad", "contextId": "ctx-7",
                        "status": {"state": "failed", "message": {"kind": "message", "role": "agent",
                            "messageId": "e", "parts": [{"kind": "text", "text": "upstream exploded"}]}}}),
        };
        Reply::Json(rpc_result(req, result))
    })
    .await;
    let mut config = A2aAgentConfig::new(format!("{}/.well-known/agent-card.json", server.url));
    config.name = Some("weather".into());
    config.poll_interval_ms = 10;
    let agent = A2aAgent::connect(config).await.unwrap();
    let input = |task: &str| AgentInput {
        task: task.into(),
        session_id: "s-1".into(),
        ..Default::default()
    };
    let ctx = || AgentContext::detached("weather");
    let out = agent.invoke(input("Weather?"), ctx()).await.unwrap();
    assert_eq!(out.content, "Which city?");
    assert_eq!(out.data.unwrap()["a2a"]["state"], "input-required");
    let out = agent.invoke(input("Oslo"), ctx()).await.unwrap();
    assert_eq!(out.content, "Oslo: 3°C");
    let follow_up = &server.rec.bodies()[1]["params"]["message"];
    assert_eq!(
        follow_up["taskId"], "t-in",
        "the follow-up continues the waiting task"
    );
    assert_eq!(follow_up["contextId"], "ctx-7");
    let out = agent.invoke(input("slow one"), ctx()).await.unwrap();
    assert_eq!(out.content, "slow but done");
    let poll = &server.rec.bodies()[3];
    assert_eq!(poll["method"], "tasks/get");
    assert_eq!(poll["params"]["id"], "t-slow");
    let err = agent.invoke(input("break"), ctx()).await.unwrap_err();
    assert!(err.to_string().contains("upstream exploded"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_json_rpc_error_fails_the_call() {
    let server = Server::a2a(v03_card(false), |_, req| {
        Reply::Json(json!({"jsonrpc": "2.0", "id": req["id"].clone(),
                           "error": {"code": -32602, "message": "Invalid params"}}))
    })
    .await;
    let orch = Orchestrator::new();
    orch.register(connect(&server).await);
    let r = orch
        .run(RunRequest::new("sequential", "x").agents(["researcher"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.error.unwrap().message.contains("Invalid params"));
}

#[tokio::test]
async fn cancellation_drops_the_stream_and_cancels_the_remote_task() {
    let server = Server::a2a(v03_card(true), |_, req| {
        if req["method"] == "tasks/cancel" {
            return Reply::Json(rpc_result(req, task("t-long", "canceled", json!([]))));
        }
        Reply::SseHang(vec![
            rpc_result(req, task("t-long", "working", json!([]))).to_string(),
            rpc_result(
                req,
                json!({"kind": "artifact-update", "taskId": "t-long", "contextId": "ctx-1",
                       "artifact": {"artifactId": "a", "parts": [{"kind": "text", "text": "partial"}]}}),
            )
            .to_string(),
        ])
    })
    .await;
    let orch = Orchestrator::new();
    orch.register(connect(&server).await);
    let mut stream = orch
        .stream(RunRequest::new("sequential", "long job").agents(["researcher"]))
        .unwrap();
    while let Some(ev) = stream.next().await {
        if ev.type_name() == "agent_delta" {
            break;
        }
    }
    stream.cancel();
    within(
        "the stream's connection to close",
        server.rec.closed.notified(),
    )
    .await;
    let r = stream.result().await.unwrap();
    assert_eq!(r.status, RunStatus::Cancelled);
    // The peer is told to stop the task.
    within("the tasks/cancel request", async {
        while server.rec.count() < 2 {
            server.rec.arrived.notified().await;
        }
    })
    .await;
    let cancel = &server.rec.bodies()[1];
    assert_eq!(cancel["method"], "tasks/cancel");
    assert_eq!(cancel["params"]["id"], "t-long");
}

fn task_states(evs: &[OrchestrationEvent]) -> Vec<(String, Option<String>, Option<String>)> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentTaskState {
                agent,
                state,
                task_id,
                message,
                ..
            } => {
                assert_eq!(agent, "researcher");
                Some((state.clone(), task_id.clone(), message.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn task_states_are_emitted_as_they_arrive_streamed_or_polled() {
    // Streamed: submitted, working (with a status message), completed.
    let server = Server::a2a(v03_card(true), |_, req| {
        let ev = |result: Value| rpc_result(req, result).to_string();
        Reply::Sse(vec![
            ev(task("t-5", "submitted", json!([]))),
            ev(json!({"kind": "status-update", "taskId": "t-5", "contextId": "ctx-1", "final": false,
                      "status": {"state": "working", "message": {"kind": "message", "role": "agent",
                          "messageId": "w", "parts": [{"kind": "text", "text": "checking sources"}]}}})),
            ev(json!({"kind": "artifact-update", "taskId": "t-5", "contextId": "ctx-1",
                      "artifact": {"artifactId": "a1", "parts": [{"kind": "text", "text": "Found it."}]}})),
            ev(json!({"kind": "status-update", "taskId": "t-5", "contextId": "ctx-1",
                      "status": {"state": "completed"}, "final": true})),
        ])
    })
    .await;
    let orch = Orchestrator::new();
    orch.register(connect(&server).await);
    let evs = events(
        &orch,
        RunRequest::new("sequential", "Find it").agents(["researcher"]),
    )
    .await;
    let t5 = Some("t-5".to_owned());
    assert_eq!(
        task_states(&evs),
        [
            ("submitted".into(), t5.clone(), None),
            (
                "working".into(),
                t5.clone(),
                Some("checking sources".into())
            ),
            ("completed".into(), t5, None),
        ]
    );
    // In arrival order: working before the first delta, all before the answer.
    let position =
        |pred: &dyn Fn(&EventKind) -> bool| evs.iter().position(|e| pred(&e.kind)).unwrap();
    let working =
        position(&|k| matches!(k, EventKind::AgentTaskState { state, .. } if state == "working"));
    let delta = position(&|k| matches!(k, EventKind::AgentDelta { .. }));
    let completed_state =
        position(&|k| matches!(k, EventKind::AgentTaskState { state, .. } if state == "completed"));
    let answered = position(&|k| matches!(k, EventKind::AgentCompleted { .. }));
    assert!(working < delta && delta < completed_state && completed_state < answered);
    assert_eq!(
        evs.iter()
            .find(|e| matches!(e.kind, EventKind::AgentTaskState { .. }))
            .map(|e| serde_json::to_value(e).unwrap()["type"].clone()),
        Some(json!("agent_task_state"))
    );

    // Replied and polled: working in the reply, then failed when polled.
    let server = Server::a2a(v03_card(false), |n, req| {
        let result = match n {
            0 => task("t-6", "working", json!([])),
            _ => json!({"kind": "task", "id": "t-6", "contextId": "ctx-1",
                        "status": {"state": "failed", "message": {"kind": "message", "role": "agent",
                            "messageId": "e", "parts": [{"kind": "text", "text": "no sources"}]}}}),
        };
        Reply::Json(rpc_result(req, result))
    })
    .await;
    let mut config = A2aAgentConfig::new(&server.url);
    config.poll_interval_ms = 10;
    let orch = Orchestrator::new();
    orch.register(A2aAgent::connect(config).await.unwrap());
    let evs = events(
        &orch,
        RunRequest::new("sequential", "Find it").agents(["researcher"]),
    )
    .await;
    let t6 = Some("t-6".to_owned());
    assert_eq!(
        task_states(&evs),
        [
            ("working".into(), t6.clone(), None),
            ("failed".into(), t6, Some("no sources".into())),
        ]
    );
    let r = evs.last().and_then(|e| e.kind.result()).unwrap();
    assert_eq!(r.status, RunStatus::Failed);
}
