//! Per-stage micro-benchmarks of the Rust core on the benchmark workload (bench/README.md), so
//! that a regression shows which stage moved. Every figure is a rate of points (spans, values
//! or digests where named) per second of one thread:
//! `cargo bench --bench stages --features bench-internals` (or `make bench-stages`).

mod series_keys;
mod trace_stages;
mod trace_workload;
mod workload;

use std::hint::black_box;
use std::time::{Duration, Instant};

use _core::bench_api::{core_without_windows, ShardedWindows};
use _core::decode::stage_request;
use _core::ingest::MetricsCore;
use _core::otlp_decode::decode_request;
use _core::staged::Limits;
use _core::tdigest::TDigest;
use _core::windows::RollupSettings;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};

use series_keys::series_keys;
use workload::{metric_requests, Rng, NOW, POINTS_PER_REQUEST, SERIES};

/// Requests replayed by the ingest benchmarks: 100,000 points, every series 10 times.
const POOL: usize = 100;
/// Requests in the core at `take_batch`: 100,000 points, 10 per series and chunk row.
const BATCH_REQUESTS: usize = 100;
const DIGEST_VALUES: usize = 1_000;
/// Minute windows merged into an hour.
const DIGESTS_PER_MERGE: usize = 60;

fn per_request() -> Throughput {
    Throughput::Elements(POINTS_PER_REQUEST as u64)
}

/// A core that has seen every series once and buffers no point, its windows open: the steady
/// state, where no request brings a new series.
fn warm_core(core: MetricsCore, pool: &[Vec<u8>]) -> MetricsCore {
    let rounds = SERIES.div_ceil(POINTS_PER_REQUEST);
    pool.iter().cycle().take(rounds).for_each(|r| {
        core.ingest(r, NOW).expect("benchmark requests decode");
    });
    drop(core.take_batch_at(NOW, false, false));
    core
}

/// Times `iters` ingests over the pool; every `POOL` requests the buffers are taken, untimed,
/// as the daemon's writer takes them every second. Windows stay open (the clock is fixed).
fn timed_ingests(core: &MetricsCore, pool: &[Vec<u8>], iters: u64) -> Duration {
    let mut elapsed = Duration::ZERO;
    for (n, request) in pool.iter().cycle().take(iters as usize).enumerate() {
        let t = Instant::now();
        black_box(
            core.ingest(request, NOW)
                .expect("benchmark requests decode"),
        );
        elapsed += t.elapsed();
        if (n + 1) % pool.len() == 0 {
            drop(core.take_batch_at(NOW, false, false));
        }
    }
    drop(core.take_batch_at(NOW, false, false));
    elapsed
}

// Decode: the borrowed OTLP reader over one request of the mixed 10k-series scenario.
fn decode(c: &mut Criterion, pool: &[Vec<u8>]) {
    let mut group = c.benchmark_group("decode");
    group.throughput(per_request());
    let mut requests = pool.iter().cycle();
    group.bench_function("decode_request", |b| {
        let mut spare = Vec::new();
        b.iter(|| {
            let request = requests.next().expect("cycle");
            black_box(
                decode_request(request, &mut spare)
                    .expect("decodes")
                    .points
                    .len(),
            )
        })
    });
    group.finish();
}

// Stage: validation, canonical form and series-key hashing of every point of one decoded
// request (decoded untimed); and the canonical form and hashing alone.
fn stage(c: &mut Criterion, pool: &[Vec<u8>]) {
    let mut group = c.benchmark_group("stage");
    group.throughput(per_request());
    let limits = Limits::default();
    let mut spares = vec![Vec::new(); pool.len()];
    group.bench_function("stage_request", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(pool.len());
                let views: Vec<_> = (pool[..n].iter().zip(&mut spares))
                    .map(|(r, spare)| decode_request(r, spare).expect("decodes"))
                    .collect();
                let t = Instant::now();
                for view in views {
                    black_box(stage_request(view, "default", NOW, &limits).points.len());
                }
                elapsed += t.elapsed();
                left -= n;
            }
            elapsed
        })
    });
    let mut spare = Vec::new();
    let view = decode_request(&pool[0], &mut spare).expect("decodes");
    let mut ids = Vec::with_capacity(POINTS_PER_REQUEST);
    series_keys(&view, &limits, &mut ids);
    let mut spare_too = Vec::new();
    let again = decode_request(&pool[0], &mut spare_too).expect("decodes");
    let staged: Vec<u64> = stage_request(again, "default", NOW, &limits)
        .points
        .iter()
        .map(|p| p.key.id)
        .collect();
    assert_eq!(ids, staged, "series_keys must compute stage_request's ids");
    group.bench_function("series_keys", |b| {
        b.iter(|| {
            ids.clear();
            series_keys(black_box(&view), &limits, &mut ids);
            black_box(ids.len())
        })
    });
    group.finish();
}

// Ingest: the whole `MetricsCore::ingest` (decode, stage, shard appends), with and without
// windows, and the windowing step alone on staged requests.
fn ingest(c: &mut Criterion, pool: &[Vec<u8>]) {
    let mut group = c.benchmark_group("ingest");
    group.throughput(per_request());
    let (limits, rollups) = (Limits::default(), RollupSettings::default());
    let core = warm_core(MetricsCore::new(limits, rollups.clone()), pool);
    assert_eq!(core.open_windows(), SERIES, "one open window per series");
    group.bench_function("with_windows", |b| {
        b.iter_custom(|iters| timed_ingests(&core, pool, iters))
    });
    drop(core);
    let core = warm_core(core_without_windows(limits, rollups.clone()), pool);
    assert_eq!(core.open_windows(), 0, "points skip their windows");
    group.bench_function("without_windows", |b| {
        b.iter_custom(|iters| timed_ingests(&core, pool, iters))
    });
    drop(core);
    let mut spares = vec![Vec::new(); pool.len()];
    let staged: Vec<_> = pool
        .iter()
        .zip(&mut spares)
        .map(|(r, spare)| {
            stage_request(
                decode_request(r, spare).expect("ok"),
                "default",
                NOW,
                &limits,
            )
        })
        .collect();
    let mut windows = ShardedWindows::default();
    let mut seq = 0;
    for s in &staged {
        seq += 1;
        windows.add_request(s, &rollups, seq);
    }
    group.bench_function("windowing_alone", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for s in staged.iter().cycle().take(iters as usize) {
                seq += 1;
                windows.add_request(s, &rollups, seq);
            }
            t.elapsed()
        })
    });
    black_box(windows.len());
    group.finish();
}

// Digest: t-digest (δ = 100) inserts of 1,000 lognormal values one by one, as a window adds
// them, then a compress; and a merge of 60 such digests into one, as minute windows make an hour.
fn digest(c: &mut Criterion) {
    let mut group = c.benchmark_group("digest");
    let mut rng = Rng::new(3);
    let values: Vec<Vec<f64>> = (0..DIGESTS_PER_MERGE)
        .map(|_| {
            (0..DIGEST_VALUES)
                .map(|_| rng.lognormal(3.0, 1.0))
                .collect()
        })
        .collect();
    let build = |values: &[f64]| {
        let mut d = TDigest::default();
        values.iter().for_each(|&x| d.add(x).expect("finite"));
        d.compress();
        d
    };
    group.throughput(Throughput::Elements(DIGEST_VALUES as u64));
    group.bench_function("insert_1000_values", |b| {
        b.iter(|| build(black_box(&values[0])))
    });
    let digests: Vec<TDigest> = values.iter().map(|v| build(v)).collect();
    group.throughput(Throughput::Elements(DIGESTS_PER_MERGE as u64));
    group.bench_function("merge_60_digests", |b| {
        b.iter(|| {
            let mut hour = TDigest::default();
            hour.merge_all(black_box(&digests));
            hour
        })
    });
    group.finish();
}

// COPY encoding: `take_batch` of a core holding 100 requests (100,000 points, 10 per series):
// the point and histogram chunks only, and with every window and hour closed (rollup rows).
fn copy(c: &mut Criterion, pool: &[Vec<u8>]) {
    let mut group = c.benchmark_group("copy");
    group.throughput(Throughput::Elements(
        (BATCH_REQUESTS * POINTS_PER_REQUEST) as u64,
    ));
    // Each sample refills the core first (untimed, about ten times the time measured):
    // few, flat samples keep the run short.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(2));
    let core = warm_core(
        MetricsCore::new(Limits::default(), RollupSettings::default()),
        pool,
    );
    let fill = || {
        for r in pool.iter().cycle().take(BATCH_REQUESTS) {
            core.ingest(r, NOW).expect("benchmark requests decode");
        }
    };
    for (name, flush_all) in [
        ("take_batch_points", false),
        ("take_batch_with_rollups", true),
    ] {
        fill();
        let batch = core
            .take_batch_at(NOW, flush_all, flush_all)
            .expect("a batch");
        eprintln!(
            "copy/{name}: {} points in {} chunk and {} histogram chunk rows, {} window and {} \
             hour rollup rows, {:.1} MB of COPY data",
            batch.points,
            batch.chunk_rows,
            batch.histogram_chunk_rows,
            batch.window_rollup_rows,
            batch.hour_rollup_rows,
            (batch.point_chunks_copy.len()
                + batch.histogram_chunks_copy.len()
                + batch.rollups_copy.len()) as f64
                / 1e6,
        );
        group.bench_function(name, |b| {
            b.iter_batched(
                fill,
                |()| core.take_batch_at(NOW, flush_all, flush_all),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn stages(c: &mut Criterion) {
    let pool = metric_requests(POOL);
    let bytes: usize = pool.iter().map(Vec::len).sum();
    eprintln!(
        "workload: {POOL} requests of {POINTS_PER_REQUEST} points over {SERIES} series, {:.0} \
         bytes per point on the wire",
        bytes as f64 / (POOL * POINTS_PER_REQUEST) as f64
    );
    decode(c, &pool);
    stage(c, &pool);
    ingest(c, &pool);
    digest(c);
    copy(c, &pool);
    trace_stages::traces(c);
}

/// Short runs: the whole suite takes about a minute on two cores (after the release build).
fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = stages
}
criterion_main!(benches);
