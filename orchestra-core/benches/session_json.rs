//! Serializing a session, the main CPU cost of a write to a remote store
//! (the Redis store serializes the whole session on every write): the
//! session left by a 5-agent sequential run, and one after ten such runs.
//!
//! ```sh
//! cargo bench -p orchestra-core --bench session_json
//! ```

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orchestra_core::{AgentInput, FnAgent, Orchestrator, RunRequest, session::Session};

/// The session after `runs` sequential runs over five agents that answer a
/// sentence each, as the server's demo agents do.
fn session_after(runs: usize) -> Session {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let orch = Orchestrator::new();
        let names: Vec<String> = (0..5).map(|i| format!("agent{i}")).collect();
        for name in &names {
            orch.register(FnAgent::new(
                name.clone(),
                "answers with a sentence",
                |i: AgentInput, _| async move {
                    format!(
                        "Notes on '{}': background, two facts and an open question.",
                        i.task
                    )
                },
            ));
        }
        let mut session_id: Option<String> = None;
        for _ in 0..runs {
            let mut request =
                RunRequest::new("sequential", "Write about tides").agents(names.clone());
            if let Some(id) = &session_id {
                request = request.session(id.clone());
            }
            let result = orch.run(request).await.expect("valid request");
            session_id = Some(result.session_id);
        }
        let id = session_id.expect("at least one run");
        orch.get_session(&id)
            .await
            .expect("store")
            .expect("session")
    })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_json");
    for runs in [1, 10] {
        let session = session_after(runs);
        let bytes = serde_json::to_vec(&session).expect("serializable").len();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(format!("runs_{runs}_{bytes}_bytes"), |b| {
            b.iter(|| serde_json::to_vec(&session).expect("serializable"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
