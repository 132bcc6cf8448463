//! The benchmark workload, built in Rust: the metric requests of `bench/otlp_payloads.py` (the
//! mixed 10k-series scenario, same names, attributes, kinds and values; see bench/README.md)
//! and trace requests shaped like `bench/trace_payloads.py`'s (in `trace_workload.rs`).

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

pub const SERIES: usize = 10_000;
pub const POINTS_PER_REQUEST: usize = 1_000;
/// The ingest time of every benchmark: 2023-11-14T22:13:20Z, 20 s into a minute, so a pool
/// of up to 4,000 requests (5 ms apart) lies in one window.
pub const NOW: i64 = 1_700_000_000_000_000_000;
/// Time between consecutive requests of a pool, as in `otlp_payloads.py`.
const STEP_NS: i64 = 5_000_000;
const NS_PER_SECOND: i64 = 1_000_000_000;
const KINDS: [Kind; 5] = [
    Kind::Gauge,
    Kind::Gauge,
    Kind::Sum,
    Kind::Sum,
    Kind::Histogram,
];
const METRICS_PER_KIND: usize = 10;
const HISTOGRAM_BOUNDS: [f64; 9] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0];
const RESOURCE_ATTRIBUTES: [(&str, &str); 4] = [
    ("service.name", "tidegate-bench"),
    ("service.version", "1.0.0"),
    ("host.name", "bench-host-01"),
    ("deployment.environment", "bench"),
];
const REGIONS: [&str; 4] = ["eu-west-1", "us-east-1", "ap-south-1", "us-west-2"];
const CUMULATIVE: i32 = 2;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Gauge,
    Sum,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Sum => "sum",
            Kind::Histogram => "histogram",
        }
    }
}

/// splitmix64: a seeded generator, so every run builds the same bytes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Lognormal with the given parameters of the underlying normal (Box-Muller).
    pub fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        let (u, v) = (1.0 - self.unit(), self.unit());
        let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
        (mu + sigma * normal).exp()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

pub fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn metric_name(series: usize) -> String {
    let kind = KINDS[series % KINDS.len()];
    let index = (series / KINDS.len()) % METRICS_PER_KIND;
    format!("bench.{}.m{index}", kind.name())
}

/// The 5 string attributes of one series; `sk` makes every series unique.
fn series_attributes(k: usize) -> Vec<KeyValue> {
    vec![
        string_kv("host", &format!("h-{:02}", k % 64)),
        string_kv("region", REGIONS[k % REGIONS.len()]),
        string_kv("pod", &format!("pod-{:03}", k % 997)),
        string_kv("route", &format!("/r/{}", (k / 7) % 50)),
        string_kv("sk", &format!("s{k:05}")),
    ]
}

/// `n` encoded requests of the mixed 10k-series scenario ending at [`NOW`]: request `i`
/// holds the 1,000 series after `i * 1,000` (wrapping), at `NOW - (n - i) * 5 ms`.
pub fn metric_requests(n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(0);
    let first_ns = NOW - n as i64 * STEP_NS;
    // Cumulative Sums and Histograms all started one hour before the pool.
    let start_ns = (first_ns - 3600 * NS_PER_SECOND) as u64;
    let weights: Vec<Vec<u64>> = (0..97)
        .map(|_| {
            (0..=HISTOGRAM_BOUNDS.len())
                .map(|_| 1 + rng.below(9))
                .collect()
        })
        .collect();
    let attributes: Vec<Vec<KeyValue>> = (0..SERIES).map(series_attributes).collect();
    (0..n)
        .map(|i| {
            let time_ns = (first_ns + i as i64 * STEP_NS) as u64;
            // Metrics in the order their first series appears, as the Python dict keeps them.
            let mut members: Vec<(String, Vec<usize>)> = Vec::new();
            let mut slot: HashMap<String, usize> = HashMap::new();
            for j in 0..POINTS_PER_REQUEST {
                let k = (i * POINTS_PER_REQUEST + j) % SERIES;
                let name = metric_name(k);
                let at = *slot.entry(name.clone()).or_insert_with(|| {
                    members.push((name, Vec::new()));
                    members.len() - 1
                });
                members[at].1.push(k);
            }
            let metrics = members
                .into_iter()
                .map(|(name, ks)| {
                    let kind = KINDS[ks[0] % KINDS.len()];
                    let round = Round {
                        index: i as u64,
                        time_ns,
                        start_ns,
                    };
                    let (unit, data) = match kind {
                        Kind::Gauge => ("1", gauge(&ks, &attributes, &round, &mut rng)),
                        Kind::Sum => ("By", sum(&ks, &attributes, &round)),
                        Kind::Histogram => ("ms", histogram(&ks, &attributes, &round, &weights)),
                    };
                    Metric {
                        name,
                        unit: unit.into(),
                        data: Some(data),
                        ..Metric::default()
                    }
                })
                .collect();
            request(metrics).encode_to_vec()
        })
        .collect()
}

/// What the points of one request share.
struct Round {
    /// The request's number: cumulative values grow with it.
    index: u64,
    time_ns: u64,
    start_ns: u64,
}

fn gauge(ks: &[usize], attributes: &[Vec<KeyValue>], round: &Round, rng: &mut Rng) -> Data {
    let data_points = ks
        .iter()
        .map(|&k| NumberDataPoint {
            attributes: attributes[k].clone(),
            time_unix_nano: round.time_ns,
            value: Some(number_data_point::Value::AsDouble(rng.unit())),
            ..NumberDataPoint::default()
        })
        .collect();
    Data::Gauge(Gauge { data_points })
}

fn sum(ks: &[usize], attributes: &[Vec<KeyValue>], round: &Round) -> Data {
    let data_points = ks
        .iter()
        .map(|&k| NumberDataPoint {
            attributes: attributes[k].clone(),
            start_time_unix_nano: round.start_ns,
            time_unix_nano: round.time_ns,
            value: Some(number_data_point::Value::AsDouble(
                (k as u64 % 1000 + 10 * round.index) as f64,
            )),
            ..NumberDataPoint::default()
        })
        .collect();
    Data::Sum(Sum {
        data_points,
        aggregation_temporality: CUMULATIVE,
        is_monotonic: true,
    })
}

fn histogram(
    ks: &[usize],
    attributes: &[Vec<KeyValue>],
    round: &Round,
    weights: &[Vec<u64>],
) -> Data {
    let data_points = ks
        .iter()
        .map(|&k| {
            let counts: Vec<u64> = weights[k % weights.len()]
                .iter()
                .map(|w| (round.index + 1) * w)
                .collect();
            let total: u64 = counts.iter().sum();
            HistogramDataPoint {
                attributes: attributes[k].clone(),
                start_time_unix_nano: round.start_ns,
                time_unix_nano: round.time_ns,
                count: total,
                sum: Some(total as f64 * 42.5),
                bucket_counts: counts,
                explicit_bounds: HISTOGRAM_BOUNDS.to_vec(),
                min: Some(0.5),
                max: Some(4000.0),
                ..HistogramDataPoint::default()
            }
        })
        .collect();
    Data::Histogram(Histogram {
        data_points,
        aggregation_temporality: CUMULATIVE,
    })
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    let resource = Resource {
        attributes: RESOURCE_ATTRIBUTES
            .iter()
            .map(|(k, v)| string_kv(k, v))
            .collect(),
        ..Resource::default()
    };
    let scope = InstrumentationScope {
        name: "tidegate.bench".into(),
        version: "1".into(),
        ..InstrumentationScope::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope),
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}
