//! The workloads of the `overhead` and `overhead_mimalloc` benches: no-op
//! agents run by the orchestrator, next to a plain-tokio floor that makes
//! the same agent calls without orchestration.

use std::sync::Arc;

use criterion::Criterion;
use orchestra_core::{
    Agent, AgentContext, AgentInput, AgentRef, FnAgent, Message, Orchestrator, RunRequest,
    RunStatus,
};

fn noop(name: String) -> AgentRef {
    Arc::new(FnAgent::new(
        name,
        "does nothing",
        |i: AgentInput, _| async move { i.task },
    ))
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// The floor: what a hand-written tokio program pays for the same calls
/// (building the input with the conversation so far, invoking, keeping the message).
async fn floor_sequential(agents: &[AgentRef], task: &str) -> String {
    let mut messages = vec![Message::user(task)];
    let mut input = task.to_owned();
    for a in agents {
        let out = a
            .invoke(
                AgentInput {
                    task: input.clone(),
                    messages: messages.clone(),
                    ..Default::default()
                },
                AgentContext::detached(a.name()),
            )
            .await
            .unwrap_or_default();
        messages.push(out.to_message(a.name()));
        input = out.content;
    }
    input
}

async fn floor_concurrent(agents: &[AgentRef], task: &str) -> usize {
    let messages = vec![Message::user(task)];
    let calls = agents.iter().map(|a| {
        let a = a.clone();
        let input = AgentInput {
            task: task.to_owned(),
            messages: messages.clone(),
            ..Default::default()
        };
        tokio::spawn(async move { a.invoke(input, AgentContext::detached(a.name())).await })
    });
    futures::future::join_all(calls).await.len()
}

/// Every workload, in criterion groups named `{prefix}{workload}`.
pub fn bench(c: &mut Criterion, prefix: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let orch = Orchestrator::new();
    let seq = names("s", 5);
    let conc = names("c", 10);
    let chat = names("g", 2);
    for n in seq.iter().chain(&conc).chain(&chat) {
        orch.register_arc(noop(n.clone()));
    }
    let conc_agents: Vec<AgentRef> = conc.iter().filter_map(|n| orch.agent(n)).collect();
    let chat_agents: Vec<AgentRef> = (0..10).map(|i| orch.agent(&chat[i % 2]).unwrap()).collect();

    sequential(c, prefix, &rt, &orch, &seq, 5);

    let mut g = c.benchmark_group(format!("{prefix}concurrent_10"));
    g.bench_function("orchestra", |b| {
        b.to_async(&rt).iter(|| async {
            let r = orch
                .run(
                    RunRequest::new("concurrent", "t")
                        .agents(conc.clone())
                        .option("aggregator", "all"),
                )
                .await
                .unwrap();
            assert_eq!(r.status, RunStatus::Completed);
        })
    });
    g.bench_function("floor", |b| {
        b.to_async(&rt).iter(|| floor_concurrent(&conc_agents, "t"))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("{prefix}group_chat_10_rounds"));
    g.bench_function("orchestra", |b| {
        b.to_async(&rt).iter(|| async {
            let r = orch
                .run(
                    RunRequest::new("group_chat", "t")
                        .agents(chat.clone())
                        .option("max_rounds", 10),
                )
                .await
                .unwrap();
            assert_eq!(r.steps.len(), 10);
        })
    });
    g.bench_function("floor", |b| {
        b.to_async(&rt).iter(|| floor_sequential(&chat_agents, "t"))
    });
    g.finish();

    // The same sequential run at 1 and 20 agents: the difference over 19
    // steps is the cost of one more step, without the run's fixed part
    // (validation, ids, two session writes, the result).
    for n in [1, 20] {
        sequential(c, prefix, &rt, &orch, &seq, n);
    }
}

/// `{prefix}sequential_{n}`: a sequential run over `n` agents (cycling through
/// `names`), orchestrated and by hand.
fn sequential(
    c: &mut Criterion,
    prefix: &str,
    rt: &tokio::runtime::Runtime,
    orch: &Orchestrator,
    names: &[String],
    n: usize,
) {
    let agents: Vec<String> = (0..n).map(|i| names[i % names.len()].clone()).collect();
    let refs: Vec<AgentRef> = agents.iter().filter_map(|a| orch.agent(a)).collect();
    let mut g = c.benchmark_group(format!("{prefix}sequential_{n}"));
    g.bench_function("orchestra", |b| {
        b.to_async(rt).iter(|| async {
            let r = orch
                .run(RunRequest::new("sequential", "t").agents(agents.clone()))
                .await
                .unwrap();
            assert_eq!(r.status, RunStatus::Completed);
            assert_eq!(r.steps.len(), n);
        })
    });
    g.bench_function("floor", |b| {
        b.to_async(rt).iter(|| floor_sequential(&refs, "t"))
    });
    g.finish();
}
