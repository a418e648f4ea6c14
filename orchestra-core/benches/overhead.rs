//! Orchestration overhead with no-op agents, next to a plain-tokio floor that
//! makes the same agent calls without orchestration, on the system allocator
//! (what a library user gets by default).
//!
//! ```sh
//! cargo bench -p orchestra-core --bench overhead
//! ```

#[path = "workloads/overhead.rs"]
mod workloads;

fn bench(c: &mut criterion::Criterion) {
    workloads::bench(c, "");
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
