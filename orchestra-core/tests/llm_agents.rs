//! LLM agents, managers and planners against a scripted OpenAI-compatible
//! server on 127.0.0.1 (real HTTP, real SSE).

mod fixtures_llm;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use fixtures_llm::*;
use futures::StreamExt;
use orchestra_core::{
    EventKind, FnAgent, OrchestrationEvent, Orchestrator, RunRequest, RunStatus, Usage,
    agents::openai::{OpenAiAgentConfig, OpenAiChatModel, OpenAiConfig},
    llm::{LlmAgent, LlmManager, LlmPlanner, Tool},
};
use serde_json::{Value, json};

fn model(server: &Server, stream: bool) -> Arc<OpenAiChatModel> {
    let mut c = OpenAiConfig::new(server.base_url(), "test-model");
    c.stream = stream;
    Arc::new(OpenAiChatModel::new(c).unwrap())
}

async fn events(orch: &Orchestrator, req: RunRequest) -> Vec<OrchestrationEvent> {
    orch.stream(req).unwrap().collect().await
}

fn last_result(evs: &[OrchestrationEvent]) -> orchestra_core::RunResult {
    evs.last()
        .and_then(|e| e.kind.result())
        .cloned()
        .expect("a terminal event")
}

#[tokio::test]
async fn a_plain_answer_comes_back_with_usage_and_the_configured_request() {
    let server = Server::openai(vec![Reply::Json(completion("Paris.", 12, 3))]).await;
    // A variable that is always set stands in for the key: no test thread
    // has to change the environment.
    let key = std::env::var("PATH").unwrap();
    let config: OpenAiAgentConfig = serde_json::from_value(json!({
        "name": "geo", "description": "knows capitals",
        "base_url": server.base_url(), "model": "test-model",
        "api_key_env": "PATH",
        "system_prompt": "Answer in one word.", "temperature": 0.1, "max_tokens": 50,
        "stream": false
    }))
    .unwrap();
    let orch = Orchestrator::new();
    orch.register(config.build().unwrap());
    let r = orch
        .run(RunRequest::new("sequential", "Capital of France?").agents(["geo"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.output.as_deref(), Some("Paris."));
    assert_eq!(r.usage.total_tokens, 15);
    let body = &server.rec.bodies()[0];
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], false);
    assert_eq!(body["max_tokens"], 50);
    assert!((body["temperature"].as_f64().unwrap() - 0.1).abs() < 1e-6);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Answer in one word."})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "Capital of France?"})
    );
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
    let headers = &server.rec.headers.lock().unwrap()[0];
    assert_eq!(headers["authorization"], format!("Bearer {key}").as_str());
}

#[tokio::test]
async fn streamed_deltas_arrive_in_order_through_the_run_stream() {
    let server = Server::openai(vec![streamed_text(&["Hel", "lo", " world"], 7, 3)]).await;
    let orch = Orchestrator::new();
    orch.register(LlmAgent::new("talker", "talks", model(&server, true)));
    let evs = events(
        &orch,
        RunRequest::new("sequential", "greet").agents(["talker"]),
    )
    .await;
    let deltas: Vec<(u64, &str)> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentDelta { delta, .. } => Some((e.seq, delta.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        deltas.iter().map(|d| d.1).collect::<Vec<_>>(),
        vec!["Hel", "lo", " world"]
    );
    let completed_seq = evs
        .iter()
        .find(|e| e.type_name() == "agent_completed")
        .map(|e| e.seq)
        .unwrap();
    assert!(deltas.iter().all(|(seq, _)| *seq < completed_seq));
    let r = last_result(&evs);
    assert_eq!(r.output.as_deref(), Some("Hello world"));
    assert_eq!(r.usage.total_tokens, 10);
    let body = &server.rec.bodies()[0];
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct CityArgs {
    city: String,
}

#[tokio::test]
async fn tool_calls_run_over_several_rounds_and_report_events() {
    // Round 1 (streamed): two calls whose pieces interleave by index.
    let round1 = Reply::Sse(vec![
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}]}}]}).to_string(),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":"}}]}}]}).to_string(),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": "{\"city\": \"Oslo\"}"}}]}}]}).to_string(),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "function": {"arguments": " \"Rome\"}"}}]}}]}).to_string(),
        finish_chunk("tool_calls"),
        usage_chunk(20, 10),
        "[DONE]".into(),
    ]);
    // Round 2: one more call, with arguments that do not parse.
    let round2 = Reply::Sse(vec![
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_3", "type": "function", "function": {"name": "weather", "arguments": "{oops"}}]}}]}).to_string(),
        finish_chunk("tool_calls"),
        "[DONE]".into(),
    ]);
    let round3 = streamed_text(&["Oslo 3°C, Rome 18°C."], 40, 8);
    let server = Server::openai(vec![round1, round2, round3]).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let tool = Tool::typed(
        "weather",
        "current weather of a city",
        move |a: CityArgs| {
            let seen = s2.clone();
            async move {
                seen.lock().unwrap().push(a.city.clone());
                let t = if a.city == "Oslo" { 3 } else { 18 };
                Ok(json!({"city": a.city, "celsius": t}))
            }
        },
    );
    let orch = Orchestrator::new();
    orch.register(LlmAgent::new("forecaster", "weather", model(&server, true)).tool(tool));
    let evs = events(
        &orch,
        RunRequest::new("sequential", "Weather in Oslo and Rome?").agents(["forecaster"]),
    )
    .await;
    let r = last_result(&evs);
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(r.output.as_deref(), Some("Oslo 3°C, Rome 18°C."));
    assert_eq!(r.usage.total_tokens, 30 + 48);
    assert_eq!(*seen.lock().unwrap(), vec!["Oslo", "Rome"]);
    let calls: Vec<(String, Value)> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolCalled {
                call_id, arguments, ..
            } => Some((call_id.clone(), arguments.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0], ("call_1".into(), json!({"city": "Oslo"})));
    assert_eq!(calls[1], ("call_2".into(), json!({"city": "Rome"})));
    let results: Vec<Value> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolCompleted { result, .. } => Some(result.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(results[0]["celsius"], 3);
    assert!(
        results[2]["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    // The model saw its own calls and each result under the right id.
    let bodies = server.rec.bodies();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[0]["tools"][0]["function"]["name"], "weather");
    assert_eq!(
        bodies[0]["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
    let msgs = bodies[1]["messages"].as_array().unwrap();
    let assistant = &msgs[msgs.len() - 3];
    assert_eq!(
        assistant["tool_calls"][1]["function"]["arguments"],
        "{\"city\": \"Rome\"}"
    );
    assert_eq!(msgs[msgs.len() - 2]["tool_call_id"], "call_1");
    assert_eq!(msgs[msgs.len() - 1]["role"], "tool");
    assert!(
        msgs[msgs.len() - 1]["content"]
            .as_str()
            .unwrap()
            .contains("18")
    );
}

#[tokio::test]
async fn the_tool_loop_stops_at_max_tool_rounds() {
    let server = Server::openai_with(|_, _| Reply::Json(tool_calls(&[("c", "noop", "{}")]))).await;
    let orch = Orchestrator::new();
    orch.register(
        LlmAgent::new("looper", "loops", model(&server, false))
            .tool(Tool::new(
                "noop",
                "does nothing",
                json!({"type": "object"}),
                |_| async { Ok(json!("ok")) },
            ))
            .max_tool_rounds(2),
    );
    let r = orch
        .run(RunRequest::new("sequential", "go").agents(["looper"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.error.unwrap().message.contains("max_tool_rounds"));
    assert_eq!(server.rec.count(), 3, "the first call and two tool rounds");
}

#[tokio::test]
async fn a_transfer_tool_call_hands_off_to_the_target_agent() {
    let server = Server::openai_with(|n, _| match n {
        0 => Reply::Json(tool_calls(&[(
            "call_t",
            "transfer_to_billing",
            r#"{"reason": "a refund question"}"#,
        )])),
        _ => Reply::Json(completion("Your refund is on its way.", 30, 6)),
    })
    .await;
    let orch = Orchestrator::new();
    orch.register(LlmAgent::new(
        "triage",
        "routes customer questions",
        model(&server, false),
    ));
    orch.register(LlmAgent::new(
        "billing",
        "handles invoices and refunds",
        model(&server, false),
    ));
    orch.register(FnAgent::new("sales", "sells", |_, _| async { "buy!" }));
    let req = RunRequest::new("handoff", "Where is my refund?")
        .agents(["triage", "billing", "sales"])
        .option(
            "routes",
            json!({"triage": ["billing"], "billing": ["triage"]}),
        );
    let evs = events(&orch, req).await;
    let r = last_result(&evs);
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(r.output.as_deref(), Some("Your refund is on its way."));
    let handoff = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Handoff { from, to, reason } => {
                Some((from.clone(), to.clone(), reason.clone()))
            }
            _ => None,
        })
        .expect("a handoff event");
    assert_eq!(
        handoff,
        (
            "triage".into(),
            "billing".into(),
            "a refund question".into()
        )
    );
    let bodies = server.rec.bodies();
    let tool_names = |b: &Value| -> Vec<String> {
        b["tools"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Each agent was offered exactly its allowed routes.
    assert_eq!(tool_names(&bodies[0]), vec!["transfer_to_billing"]);
    assert_eq!(tool_names(&bodies[1]), vec!["transfer_to_triage"]);
    assert!(
        bodies[0]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("handles invoices")
    );
    // The second agent saw the transfer in the conversation.
    assert!(
        bodies[1]
            .to_string()
            .contains("[triage]: a refund question")
    );
}

#[tokio::test]
async fn malformed_json_fails_the_call_as_invalid_output() {
    let server = Server::openai(vec![Reply::Raw {
        status: 200,
        headers: vec![],
        body: "{\"choices\": [ {not json".into(),
    }])
    .await;
    let orch = Orchestrator::new();
    orch.register(LlmAgent::new("broken", "b", model(&server, false)));
    let evs = events(
        &orch,
        RunRequest::new("sequential", "hi").agents(["broken"]),
    )
    .await;
    let failed = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::AgentFailed {
                error, will_retry, ..
            } => Some((error.code.clone(), *will_retry)),
            _ => None,
        })
        .unwrap();
    assert_eq!(failed, ("invalid_agent_output".into(), false));
    assert_eq!(last_result(&evs).status, RunStatus::Failed);
}

#[tokio::test]
async fn a_stream_cut_midway_fails_retryably_and_the_run_policy_retries() {
    let server = Server::openai(vec![
        Reply::SseCut(vec![text_chunk("Half an ans")]),
        streamed_text(&["A whole answer."], 5, 4),
    ])
    .await;
    let orch = Orchestrator::new();
    orch.register(LlmAgent::new("flaky", "f", model(&server, true)));
    let req = RunRequest::new("sequential", "hi")
        .agents(["flaky"])
        .option("retry", json!({"max_retries": 1, "initial_backoff_ms": 1}));
    let evs = events(&orch, req).await;
    let failed = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::AgentFailed {
                error, will_retry, ..
            } => Some((error.code.clone(), *will_retry)),
            _ => None,
        })
        .unwrap_or_else(|| {
            panic!(
                "no agent_failed in {:#?}",
                evs.iter().map(|e| &e.kind).collect::<Vec<_>>()
            )
        });
    assert_eq!(failed, ("agent_unreachable".into(), true));
    assert!(evs.iter().any(|e| e.type_name() == "retry"));
    // The cut came mid-answer: part of it had already streamed.
    let deltas: Vec<&str> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentDelta { delta, .. } => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, vec!["Half an ans", "A whole answer."]);
    let r = last_result(&evs);
    assert_eq!(r.output.as_deref(), Some("A whole answer."));
    assert_eq!(r.steps[0].attempts, 2);
    assert_eq!(server.rec.count(), 2);
}

#[tokio::test]
async fn rate_limited_then_success_waits_for_retry_after() {
    let server = Server::openai(vec![
        Reply::Raw {
            status: 429,
            headers: vec![
                ("retry-after-ms", "300".into()),
                ("retry-after", "1".into()),
            ],
            body: r#"{"error": {"message": "slow down", "type": "rate_limit"}}"#.into(),
        },
        Reply::Raw {
            status: 503,
            headers: vec![("retry-after", "0".into())],
            body: "upstream busy".into(),
        },
        Reply::Json(completion("finally", 1, 1)),
    ])
    .await;
    let orch = Orchestrator::new();
    orch.register(LlmAgent::new("patient", "p", model(&server, false)));
    let r = orch
        .run(RunRequest::new("sequential", "hi").agents(["patient"]))
        .await
        .unwrap();
    assert_eq!(r.output.as_deref(), Some("finally"));
    assert_eq!(r.steps[0].attempts, 1, "retried inside the model call");
    let times = server.rec.times.lock().unwrap().clone();
    assert_eq!(times.len(), 3);
    assert!(
        times[1] - times[0] >= Duration::from_millis(300),
        "{:?}",
        times[1] - times[0]
    );
}

#[tokio::test]
async fn rate_limits_beyond_the_retry_budget_surface_as_rate_limited() {
    let server = Server::openai_with(|_, _| Reply::Raw {
        status: 429,
        headers: vec![("retry-after", "120".into())],
        body: "{}".into(),
    })
    .await;
    let orch = Orchestrator::new();
    orch.register(LlmAgent::new("limited", "l", model(&server, false)));
    let evs = events(
        &orch,
        RunRequest::new("sequential", "hi").agents(["limited"]),
    )
    .await;
    let code = evs.iter().find_map(|e| match &e.kind {
        EventKind::AgentFailed { error, .. } => Some(error.code.clone()),
        _ => None,
    });
    assert_eq!(code.as_deref(), Some("rate_limited"));
    assert_eq!(
        server.rec.count(),
        1,
        "a 120 s wait is over max_retry_wait_ms"
    );
}

#[tokio::test]
async fn cancellation_aborts_the_in_flight_request() {
    let server = Server::openai(vec![Reply::SseHang(vec![text_chunk("thinking")])]).await;
    let orch = Orchestrator::new();
    orch.register(LlmAgent::new("slow", "s", model(&server, true)));
    let mut stream = orch
        .stream(RunRequest::new("sequential", "hi").agents(["slow"]))
        .unwrap();
    // Wait until the model is mid-answer.
    while let Some(ev) = stream.next().await {
        if ev.type_name() == "agent_delta" {
            break;
        }
    }
    stream.cancel();
    within(
        "the server to see the connection close",
        server.rec.closed.notified(),
    )
    .await;
    let r = stream.result().await.unwrap();
    assert_eq!(r.status, RunStatus::Cancelled);
}

fn chat_agents(orch: &Orchestrator) -> Arc<AtomicU32> {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    orch.register(FnAgent::new("writer", "writes drafts", move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async { "Draft: tides are moon-driven." }
    }));
    orch.register(FnAgent::new(
        "critic",
        "reviews drafts for accuracy",
        |_, _| async { "Accurate. APPROVED" },
    ));
    calls
}

#[tokio::test]
async fn the_llm_manager_picks_speakers_and_ends_the_chat() {
    let server = Server::openai(vec![
        Reply::Json(completion(
            r#"{"next": "writer", "reason": "nothing drafted yet"}"#,
            10,
            2,
        )),
        Reply::Json(completion(
            "```json\n{\"next\": \"Critic\", \"reason\": \"review\"}\n```",
            11,
            3,
        )),
        Reply::Json(completion(
            r#"{"next": "", "terminate": true, "reason": "approved"}"#,
            12,
            4,
        )),
    ])
    .await;
    let orch = Orchestrator::new();
    chat_agents(&orch);
    orch.register_manager("llm", Arc::new(LlmManager::new(model(&server, false))));
    let evs = events(
        &orch,
        RunRequest::new("group_chat", "Explain tides")
            .agents(["writer", "critic"])
            .option("manager", "llm"),
    )
    .await;
    let speakers: Vec<(String, String)> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SpeakerSelected { agent, reason, .. } => {
                Some((agent.clone(), reason.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        speakers,
        vec![
            ("writer".to_owned(), "nothing drafted yet".to_owned()),
            ("critic".to_owned(), "review".to_owned())
        ]
    );
    let r = last_result(&evs);
    assert_eq!(r.termination.as_deref(), Some("manager ended the chat"));
    assert_eq!(r.output.as_deref(), Some("Accurate. APPROVED"));
    // The agents used no model; every token is the manager's three calls.
    assert_eq!(r.usage, Usage::new(10 + 11 + 12, 2 + 3 + 4));
    let bodies = server.rec.bodies();
    assert_eq!(bodies[0]["response_format"]["type"], "json_object");
    let prompt = bodies[2].to_string();
    assert!(prompt.contains("reviews drafts for accuracy"));
    assert!(prompt.contains("[writer]: Draft: tides are moon-driven."));
    assert!(!evs.iter().any(|e| e.type_name() == "fallback"));
}

#[tokio::test]
async fn an_unknown_speaker_is_retried_once_then_round_robin_takes_over() {
    let server = Server::openai(vec![
        Reply::Json(completion(r#"{"next": "ghost"}"#, 1, 1)),
        Reply::Json(completion("the phantom, surely", 1, 1)),
    ])
    .await;
    let orch = Orchestrator::new();
    let writer_calls = chat_agents(&orch);
    orch.register_manager("llm", Arc::new(LlmManager::new(model(&server, false))));
    let evs = events(
        &orch,
        RunRequest::new("group_chat", "Explain tides")
            .agents(["writer", "critic"])
            .option("manager", "llm")
            .option("max_rounds", 1),
    )
    .await;
    let fallback = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Fallback { from, to, reason } => {
                Some((from.clone(), to.clone(), reason.clone()))
            }
            _ => None,
        })
        .expect("a fallback event");
    assert_eq!(
        (fallback.0.as_str(), fallback.1.as_str()),
        ("llm_manager", "round_robin")
    );
    assert!(fallback.2.contains("not a JSON object"), "{}", fallback.2);
    let bodies = server.rec.bodies();
    assert_eq!(bodies.len(), 2, "one retry, then no more model calls");
    assert!(
        bodies[1]
            .to_string()
            .contains("'ghost' is not a participant")
    );
    assert_eq!(
        writer_calls.load(Ordering::SeqCst),
        1,
        "round robin starts with the first agent"
    );
    let fallback_seq = evs
        .iter()
        .find(|e| e.type_name() == "fallback")
        .unwrap()
        .seq;
    let speaker_seq = evs
        .iter()
        .find(|e| e.type_name() == "speaker_selected")
        .unwrap()
        .seq;
    assert!(fallback_seq < speaker_seq);
}

#[tokio::test]
async fn a_corrected_speaker_name_is_used_without_fallback() {
    let server = Server::openai(vec![
        Reply::Json(completion(r#"{"next": "ghost"}"#, 1, 1)),
        Reply::Json(completion(
            r#"{"next": "critic", "reason": "corrected"}"#,
            1,
            1,
        )),
    ])
    .await;
    let orch = Orchestrator::new();
    let writer_calls = chat_agents(&orch);
    orch.register_manager("llm", Arc::new(LlmManager::new(model(&server, false))));
    let evs = events(
        &orch,
        RunRequest::new("group_chat", "t")
            .agents(["writer", "critic"])
            .option("manager", "llm")
            .option("max_rounds", 1),
    )
    .await;
    assert!(!evs.iter().any(|e| e.type_name() == "fallback"));
    assert_eq!(writer_calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        last_result(&evs).output.as_deref(),
        Some("Accurate. APPROVED")
    );
}

fn planner_reply(facts: &[&str], satisfied: bool, progressing: bool, steps: Value) -> Reply {
    let answer = json!({
        "task_ledger": {"facts": facts, "plan": ["research", "write"]},
        "progress_ledger": {
            "is_request_satisfied": satisfied, "is_progress_being_made": progressing,
            "is_in_loop": false, "next_speaker": "researcher",
            "instruction": "find the facts", "reason": "start with facts"
        },
        "steps": steps
    });
    Reply::Json(completion(&answer.to_string(), 100, 50))
}

#[tokio::test]
async fn the_llm_planner_keeps_ledgers_and_replans_after_a_stall() {
    let server = Server::openai(vec![
        planner_reply(
            &["tides exist"],
            false,
            true,
            json!([{"pattern": "sequential", "agents": ["researcher"], "task": "find tide facts"}]),
        ),
        planner_reply(
            &["tides exist", "the researcher returned nothing"],
            false,
            false,
            json!([{"pattern": "sequential", "agents": ["writer"], "task": "write from what is known"}]),
        ),
    ])
    .await;
    let orch = Orchestrator::new();
    orch.register(FnAgent::new("researcher", "finds facts", |_, _| async {
        ""
    }));
    orch.register(FnAgent::new(
        "writer",
        "writes articles",
        |i: orchestra_core::AgentInput, _| async move { format!("Article: {}", i.task) },
    ));
    let planner = Arc::new(LlmPlanner::new(model(&server, false)));
    orch.register_planner("llm", planner.clone());
    let evs = events(
        &orch,
        RunRequest::new("dynamic", "Write about tides")
            .agents(["researcher", "writer"])
            .option("planner", "llm"),
    )
    .await;
    let r = last_result(&evs);
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(
        r.output.as_deref(),
        Some("Article: write from what is known")
    );
    let created = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::PlanCreated { plan } => Some(plan.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(created.planner, "llm");
    assert_eq!(created.steps[0].agents, vec!["researcher"]);
    assert!(
        created.rationale.contains("facts: [tides exist]"),
        "{}",
        created.rationale
    );
    let updated = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::PlanUpdated { plan, ledger, .. } => Some((plan.clone(), ledger.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(updated.0.steps[0].agents, vec!["writer"]);
    assert!(updated.0.rationale.contains("progressing=no"));
    assert_eq!(updated.1.stalls, 1);
    // The two plans' tokens are the run's (the agents used no model).
    assert_eq!(r.usage, Usage::new(200, 100));
    // The replan saw the previous task ledger and what happened.
    let replan_prompt = server.rec.bodies()[1]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        replan_prompt.contains("previous task ledger"),
        "{replan_prompt}"
    );
    assert!(replan_prompt.contains("FAILED"), "{replan_prompt}");
    let ledger = planner.task_ledger(&r.run_id).unwrap();
    assert_eq!(
        ledger.facts,
        vec!["tides exist", "the researcher returned nothing"]
    );
    assert!(!evs.iter().any(|e| e.type_name() == "fallback"));
}

#[tokio::test]
async fn a_planner_answer_failing_the_schema_falls_back_to_the_heuristic() {
    let bad = json!({"task_ledger": {"facts": "not a list"}, "steps": "nope"}).to_string();
    let server = Server::openai(vec![
        Reply::Json(completion(&bad, 1, 1)),
        Reply::Json(completion(&bad, 1, 1)),
    ])
    .await;
    let orch = Orchestrator::new();
    orch.register(FnAgent::new("chef", "cooks recipes", |_, _| async {
        "Omelette."
    }));
    orch.register_planner("llm", Arc::new(LlmPlanner::new(model(&server, false))));
    let evs = events(
        &orch,
        RunRequest::new("dynamic", "Cook a recipe with eggs").option("planner", "llm"),
    )
    .await;
    let fallback = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Fallback { from, to, reason } => {
                Some((from.clone(), to.clone(), reason.clone()))
            }
            _ => None,
        })
        .expect("a fallback event");
    assert_eq!(
        (fallback.0.as_str(), fallback.1.as_str()),
        ("llm_planner", "heuristic")
    );
    assert!(fallback.2.contains("schema"), "{}", fallback.2);
    assert!(
        server.rec.bodies()[1]
            .to_string()
            .contains("does not match the schema")
    );
    let plan = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::PlanCreated { plan } => Some(plan.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(plan.planner, "heuristic");
    assert_eq!(last_result(&evs).output.as_deref(), Some("Omelette."));
}

#[tokio::test]
async fn an_unreachable_planner_model_falls_back_to_the_heuristic() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = OpenAiConfig::new(format!("http://127.0.0.1:{port}/v1"), "m");
    c.max_retries = 0;
    let orch = Orchestrator::new();
    orch.register(FnAgent::new("chef", "cooks recipes", |_, _| async {
        "Soup."
    }));
    orch.register_planner(
        "llm",
        Arc::new(LlmPlanner::new(Arc::new(OpenAiChatModel::new(c).unwrap()))),
    );
    let evs = events(
        &orch,
        RunRequest::new("dynamic", "cook").option("planner", "llm"),
    )
    .await;
    let reason = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Fallback { from, reason, .. } if from == "llm_planner" => {
                Some(reason.clone())
            }
            _ => None,
        })
        .expect("a fallback event");
    assert!(reason.contains("model failed"), "{reason}");
    assert_eq!(last_result(&evs).output.as_deref(), Some("Soup."));
}

#[tokio::test]
async fn two_transfers_in_one_turn_are_reported_and_typed_routes_ask_for_a_payload() {
    let server = Server::openai_with(|_, _| {
        Reply::Json(tool_calls(&[
            (
                "call_1",
                "transfer_to_billing",
                r#"{"reason": "invoice", "payload": {"invoice_id": "A-1"}}"#,
            ),
            ("call_2", "transfer_to_sales", r#"{"reason": "upsell"}"#),
        ]))
    })
    .await;
    let orch = Orchestrator::new();
    orch.register(LlmAgent::new("triage", "routes", model(&server, false)));
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    orch.register(FnAgent::new(
        "billing",
        "invoices",
        move |_, ctx: orchestra_core::AgentContext| {
            *g.lock().unwrap() = ctx.handoff().and_then(|h| h.payload.clone());
            async { "paid" }
        },
    ));
    orch.register(FnAgent::new("sales", "sells", |_, _| async { "sold" }));
    let schema = json!({"type": "object", "required": ["invoice_id"],
                        "properties": {"invoice_id": {"type": "string"}}});
    let req = RunRequest::new("handoff", "help")
        .agents(["triage", "billing", "sales"])
        .option("payload_schemas", json!({"billing": schema.clone()}));
    let evs = events(&orch, req).await;
    let r = last_result(&evs);
    assert_eq!(r.output.as_deref(), Some("paid"), "{:?}", r.error);
    assert_eq!(*got.lock().unwrap(), Some(json!({"invoice_id": "A-1"})));
    assert!(evs.iter().any(|e| matches!(
        &e.kind,
        EventKind::HandoffConflict { chosen, requested, .. }
            if chosen == "billing" && requested.len() == 2
    )));
    // The typed route's tool asks the model for the payload; the other does not.
    let tools = server.rec.bodies()[0]["tools"].clone();
    let params = |name: &str| {
        tools
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["function"]["name"] == name)
            .map(|t| t["function"]["parameters"].clone())
            .unwrap()
    };
    assert_eq!(
        params("transfer_to_billing")["properties"]["payload"],
        schema
    );
    assert_eq!(
        params("transfer_to_billing")["required"],
        json!(["reason", "payload"])
    );
    assert!(
        params("transfer_to_sales")["properties"]
            .get("payload")
            .is_none()
    );
}
