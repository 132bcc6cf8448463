//! A quick throughput check (not a benchmark): `cargo test --release -- --ignored --nocapture`.

use std::time::Instant;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use super::builder::*;
use crate::decode::stage_request;
use crate::otlp_decode::decode_request;
use crate::staged::Limits;

#[test]
#[ignore = "timing, run in release"]
fn ingest_throughput() {
    let points = (0..1000)
        .map(|i| {
            let vals: Vec<String> = (0..5).map(|k| format!("value-{k}-{}", i % 100)).collect();
            let pairs: Vec<(String, &str)> = vals
                .iter()
                .enumerate()
                .map(|(k, v)| (format!("attr{k}"), v.as_str()))
                .collect();
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            number(T + (i / 100) * 1000, i as f64, attrs(&pairs))
        })
        .collect();
    let bytes = request(vec![gauge("cpu.usage", points)]);
    let rounds = 300;
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(ExportMetricsServiceRequest::decode(&bytes[..]).unwrap());
    }
    let prost = t.elapsed().as_secs_f64();
    let mut spare = Vec::new();
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(decode_request(&bytes, &mut spare).unwrap());
    }
    let decode = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..rounds {
        let view = decode_request(&bytes, &mut spare).unwrap();
        std::hint::black_box(stage_request(view, "default", NOW, &Limits::default()));
    }
    let stage = t.elapsed().as_secs_f64();
    let core = core();
    let t = Instant::now();
    for _ in 0..rounds {
        core.ingest(&bytes, NOW).unwrap();
    }
    let ingest = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let batch = core.take_batch().unwrap();
    let take = t.elapsed().as_secs_f64();
    let mps = |s: f64| rounds as f64 * 1000.0 / s / 1e6;
    println!(
        "prost {:.2}, borrowed decode {:.2}, decode+stage {:.2}, ingest {:.2} M points/s; take_batch of {} points {:.1} ms",
        mps(prost), mps(decode), mps(stage), mps(ingest), batch.points, take * 1e3
    );
}
