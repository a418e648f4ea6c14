//! The `overhead` bench with mimalloc as the global allocator, as the
//! server and the Node addon use: both sides allocate, the orchestrated one
//! more, so the allocator moves the comparison.
//!
//! ```sh
//! cargo bench -p orchestra-core --bench overhead_mimalloc
//! ```

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "workloads/overhead.rs"]
mod workloads;

fn bench(c: &mut criterion::Criterion) {
    workloads::bench(c, "mimalloc/");
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
