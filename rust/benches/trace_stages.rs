//! The trace stages: `TraceCore::ingest` and `take_block`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use _core::trace_blocks::{TraceCore, TraceSettings};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput};

use crate::trace_workload::{trace_requests, SPANS_PER_REQUEST};
use crate::workload::NOW;

// Traces: `TraceCore::ingest` of a request of 1,000 spans (blocks cut untimed when due, as the
// trace writer does), and `take_block` of one full block (8 MiB of spans, zstd frames).
pub fn traces(c: &mut Criterion) {
    let mut group = c.benchmark_group("traces");
    let pool = trace_requests(64);
    let bytes: usize = pool.iter().map(Vec::len).sum();
    let core = TraceCore::new(TraceSettings::default());
    group.throughput(Throughput::Elements(SPANS_PER_REQUEST as u64));
    group.bench_function("ingest", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for request in pool.iter().cycle().take(iters as usize) {
                let t = Instant::now();
                black_box(
                    core.ingest(request, NOW)
                        .expect("benchmark requests decode"),
                );
                elapsed += t.elapsed();
                if core.block_due(NOW) {
                    drop(core.take_block(NOW, true));
                }
            }
            elapsed
        })
    });
    drop(core.take_block(NOW, true));
    // One block's worth of requests: ingested until a block is due.
    let fill = || {
        for request in pool.iter().cycle() {
            core.ingest(request, NOW)
                .expect("benchmark requests decode");
            if core.block_due(NOW) {
                break;
            }
        }
    };
    fill();
    let block = core.take_block(NOW, false).expect("a block is due");
    eprintln!(
        "traces: {:.0} bytes per span on the wire; a block of {} spans, {} traces, {:.1} MB \
         ({:.1} bytes per span, {:.1} with its compressed dictionary)",
        bytes as f64 / (pool.len() * SPANS_PER_REQUEST) as f64,
        block.spans,
        block.traces,
        block.data.len() as f64 / 1e6,
        block.data.len() as f64 / block.spans as f64,
        (block.data.len() + block.dictionary.len()) as f64 / block.spans as f64,
    );
    group.throughput(Throughput::Elements(block.spans));
    // Each sample ingests a block's worth of requests first (untimed).
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("take_block", |b| {
        b.iter_batched(
            fill,
            |()| core.take_block(NOW, false),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}
