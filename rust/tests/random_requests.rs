//! Deterministic random OTLP requests for the differential and mutation tests: all five
//! metric types, every `AnyValue` variant, nested arrays and kvlists, optional fields present
//! or absent, exemplars and metadata, and hand-encoded oddities (unknown fields, groups,
//! unpacked repeated fields, repeated singular messages).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric::Data, number_data_point, Exemplar, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use super::builder::*;

/// xorshift64: a reproducible stream, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'s>(&mut self, items: &[&'s str]) -> &'s str {
        items[self.below(items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &["a", "b", "host", "ü-ñ", "日本", "", "x\0y", "k"];
const DOUBLES: &[f64] = &[0.0, -0.0, 1.5, -2.25, f64::NAN, f64::INFINITY, 1e300];

fn any_value(rng: &mut Rng, depth: u32) -> AnyValue {
    let variant = rng.below(if depth >= 3 { 7 } else { 9 });
    let value = match variant {
        0 => None,
        1 => Some(Value::StringValue(rng.pick(WORDS).into())),
        2 => Some(Value::BoolValue(rng.chance(2))),
        3 => Some(Value::IntValue(rng.next() as i64 >> rng.below(64))),
        4 => Some(Value::DoubleValue(DOUBLES[rng.below(7) as usize])),
        5 => Some(Value::BytesValue(rng.pick(WORDS).as_bytes().to_vec())),
        6 => Some(Value::StringValueStrindex(rng.below(5) as i32 - 2)),
        7 => {
            array(
                (0..rng.below(3))
                    .map(|_| any_value(rng, depth + 1))
                    .collect(),
            )
            .value
        }
        _ => kvlist(attributes(rng, depth + 1, 3)).value,
    };
    AnyValue { value }
}

/// Up to `max` pairs; keys may repeat (a rejection, not a decode error).
pub fn attributes(rng: &mut Rng, depth: u32, max: u64) -> Vec<KeyValue> {
    (0..rng.below(max + 1))
        .map(|_| KeyValue {
            key: rng.pick(WORDS).into(),
            value: (!rng.chance(8)).then(|| any_value(rng, depth)),
            key_strindex: rng.below(3) as i32,
        })
        .collect()
}

fn time(rng: &mut Rng) -> u64 {
    [T, T - 5, 0, u64::MAX, T + 86_400_000_000_000 * 100][rng.below(5) as usize]
}

fn exemplars(rng: &mut Rng) -> Vec<Exemplar> {
    (0..rng.below(2))
        .map(|_| Exemplar {
            filtered_attributes: attributes(rng, 1, 2),
            time_unix_nano: T,
            span_id: vec![1; 8],
            trace_id: vec![2; 16],
            value: Some(exemplar::Value::AsInt(3)),
        })
        .collect()
}

fn metric(rng: &mut Rng) -> opentelemetry_proto::tonic::metrics::v1::Metric {
    let name = ["cpu", "", "mem\0", "ü"][rng.below(4) as usize];
    let n = rng.below(4) as usize;
    let temporality = rng.below(4) as i32;
    let mut m = match rng.below(6) {
        0 | 1 => {
            let points = (0..n)
                .map(|_| {
                    let mut p = number(time(rng), DOUBLES[rng.below(7) as usize], vec![]);
                    p.attributes = attributes(rng, 1, 4);
                    p.flags = rng.below(3) as u32;
                    p.start_time_unix_nano = time(rng);
                    p.exemplars = exemplars(rng);
                    p.value = match rng.below(4) {
                        0 => None,
                        1 => Some(number_data_point::Value::AsInt(rng.next() as i64)),
                        _ => p.value,
                    };
                    p
                })
                .collect();
            if rng.chance(2) {
                gauge(name, points)
            } else {
                sum(name, temporality, rng.chance(2), points)
            }
        }
        2 => {
            let points = (0..n)
                .map(|_| {
                    let bounds = [vec![], vec![1.0], vec![1.0, 0.5], vec![f64::NAN, 2.0]];
                    let bounds = bounds[rng.below(4) as usize].clone();
                    let counts = (0..bounds.len() + rng.below(2) as usize)
                        .map(|_| rng.below(5))
                        .collect();
                    let mut p = histogram_point(time(rng), bounds, counts);
                    p.attributes = attributes(rng, 1, 3);
                    p.count += rng.below(2);
                    p.sum = (!rng.chance(3)).then(|| DOUBLES[rng.below(7) as usize]);
                    p.min = rng.chance(2).then_some(-1.0);
                    p.max = rng.chance(2).then(|| DOUBLES[rng.below(7) as usize]);
                    p.exemplars = exemplars(rng);
                    p
                })
                .collect();
            histogram(name, temporality, points)
        }
        3 => {
            let points = (0..n)
                .map(|_| {
                    let scale = [0, -10, 20, 21, -11][rng.below(5) as usize];
                    let pos = (0..rng.below(4)).map(|_| rng.below(9)).collect();
                    let mut p = exp_point(time(rng), scale, rng.below(3), pos, vec![1, 2]);
                    p.attributes = attributes(rng, 1, 3);
                    p.positive.as_mut().unwrap().offset = rng.next() as i32;
                    if rng.chance(3) {
                        p.negative = None;
                    }
                    p.zero_threshold = DOUBLES[rng.below(7) as usize];
                    p.min = rng.chance(2).then_some(0.5);
                    p
                })
                .collect();
            let mut m = exp_histogram(name, points);
            if let Some(Data::ExponentialHistogram(h)) = &mut m.data {
                h.aggregation_temporality = temporality;
            }
            m
        }
        4 => {
            let points = (0..n)
                .map(|_| {
                    let q = [(0.5, 1.0), (1.5, 2.0), (0.9, f64::NAN)];
                    let q = &q[..rng.below(4) as usize];
                    let mut p = summary_point(time(rng), DOUBLES[rng.below(7) as usize], q);
                    p.attributes = attributes(rng, 1, 3);
                    p
                })
                .collect();
            summary(name, points)
        }
        _ => metric_without_data(name),
    };
    m.description = rng.pick(WORDS).into();
    m.unit = rng.pick(WORDS).into();
    m.metadata = attributes(rng, 1, 2);
    m
}

fn metric_without_data(name: &str) -> opentelemetry_proto::tonic::metrics::v1::Metric {
    opentelemetry_proto::tonic::metrics::v1::Metric {
        name: name.into(),
        ..Default::default()
    }
}

/// A random, valid request.
pub fn random_request(rng: &mut Rng) -> ExportMetricsServiceRequest {
    let resource_metrics = (0..1 + rng.below(2))
        .map(|_| ResourceMetrics {
            resource: (!rng.chance(4)).then(|| Resource {
                attributes: attributes(rng, 1, 3),
                dropped_attributes_count: rng.below(2) as u32,
                ..Resource::default()
            }),
            scope_metrics: (0..1 + rng.below(2))
                .map(|_| ScopeMetrics {
                    scope: (!rng.chance(4)).then(|| scope(rng.pick(WORDS), attributes(rng, 1, 2))),
                    metrics: (0..1 + rng.below(3)).map(|_| metric(rng)).collect(),
                    schema_url: rng.pick(WORDS).into(),
                })
                .collect(),
            schema_url: String::new(),
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

/// Appends a length-delimited field.
pub fn ld(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Appends a varint field.
pub fn vint(out: &mut Vec<u8>, tag: u32, v: u64) {
    encode_key(tag, WireType::Varint, out);
    encode_varint(v, out);
}

/// Appends a fixed64 field.
pub fn f64_field(out: &mut Vec<u8>, tag: u32, v: u64) {
    encode_key(tag, WireType::SixtyFourBit, out);
    out.extend_from_slice(&v.to_le_bytes());
}

/// Unknown fields of every wire type, a group with nested content included.
pub fn unknown_fields(out: &mut Vec<u8>) {
    vint(out, 99, 300);
    f64_field(out, 100, 7);
    encode_key(101, WireType::ThirtyTwoBit, out);
    out.extend_from_slice(&[1, 2, 3, 4]);
    ld(out, 102, b"\xff\xfe not utf-8, unknown so never checked");
    encode_key(103, WireType::StartGroup, out);
    vint(out, 1, 5);
    encode_key(104, WireType::StartGroup, out);
    encode_key(104, WireType::EndGroup, out);
    encode_key(103, WireType::EndGroup, out);
}

/// A request of one gauge metric `name` whose one data point is `point` (encoded by hand).
pub fn wrap_gauge_point(name: &[u8], point: &[u8]) -> Vec<u8> {
    let mut gauge = Vec::new();
    ld(&mut gauge, 1, point);
    let mut metric = Vec::new();
    ld(&mut metric, 1, name);
    ld(&mut metric, 5, &gauge);
    wrap_metric(&metric)
}

/// Wraps metric bytes into a request with one resource and scope.
pub fn wrap_metric(metric: &[u8]) -> Vec<u8> {
    let mut scope_metrics = Vec::new();
    ld(&mut scope_metrics, 2, metric);
    let mut rm = Vec::new();
    ld(&mut rm, 2, &scope_metrics);
    let mut req = Vec::new();
    ld(&mut req, 1, &rm);
    req
}

/// A random request of encodings prost's encoder never produces.
pub fn odd_request(rng: &mut Rng) -> Vec<u8> {
    let mut point = histogram_point(T, vec![], vec![]).encode_to_vec();
    let counts = [1u64, 2, 3];
    for (i, c) in counts.iter().enumerate() {
        f64_field(&mut point, 6, *c); // unpacked bucket_counts
        if i < 2 {
            f64_field(&mut point, 7, (i as f64 + 0.5).to_bits()); // unpacked bounds
        }
    }
    f64_field(&mut point, 4, 6); // count
    if rng.chance(2) {
        unknown_fields(&mut point);
    }
    let mut kv = Vec::new();
    ld(&mut kv, 1, b"k");
    let mut any = Vec::new();
    match rng.below(4) {
        0 => ld(&mut any, 1, b"one"),
        1 => {
            ld(&mut any, 1, b"first"); // a scalar oneof member twice: the last wins
            vint(&mut any, 3, 7);
        }
        2 => {
            let mut arr = Vec::new();
            ld(&mut arr, 1, &AnyValue::default().encode_to_vec());
            ld(&mut any, 5, &arr);
            ld(&mut any, 5, &arr); // merged
        }
        _ => unknown_fields(&mut any),
    }
    ld(&mut kv, 2, &any);
    if rng.chance(3) {
        ld(&mut kv, 2, &any); // KeyValue.value twice: merged
    }
    ld(&mut point, 9, &kv);
    let mut data = Vec::new();
    ld(&mut data, 1, &point);
    vint(&mut data, 2, 1);
    let mut metric = Vec::new();
    ld(&mut metric, 1, b"h");
    if rng.chance(3) {
        ld(&mut metric, 5, &[]); // a gauge first, replaced by the histogram
    }
    ld(&mut metric, 9, &data);
    if rng.chance(3) {
        ld(&mut metric, 9, &data); // the same member twice: merged
    }
    if rng.chance(2) {
        unknown_fields(&mut metric);
    }
    let mut req = wrap_metric(&metric);
    if rng.chance(3) {
        // resource twice inside one ResourceMetrics: merged
        let mut rm = Vec::new();
        let res = Resource {
            attributes: attrs(&[("a", "b")]),
            ..Default::default()
        };
        ld(&mut rm, 1, &res.encode_to_vec());
        ld(&mut rm, 1, &res.encode_to_vec());
        ld(&mut req, 1, &rm);
    }
    req
}
