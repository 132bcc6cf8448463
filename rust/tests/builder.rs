//! The one place that builds OTLP requests for tests.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, ExponentialHistogram, ExponentialHistogramDataPoint,
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::ingest::MetricsCore;
use crate::staged::Limits;
use crate::windows::RollupSettings;

/// The ingest time of every test: 2023-11-14T22:13:20Z.
pub const NOW: i64 = 1_700_000_000_000_000_000;
/// A point time one second before [`NOW`].
pub const T: u64 = (NOW - 1_000_000_000) as u64;
pub const DELTA: i32 = 1;
pub const CUMULATIVE: i32 = 2;

pub fn core() -> MetricsCore {
    MetricsCore::new(Limits::default(), RollupSettings::default())
}

pub fn str_value(s: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.into())),
    }
}

pub fn value(v: Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

pub fn kv(key: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(v),
        ..KeyValue::default()
    }
}

/// String attributes from pairs.
pub fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv(k, str_value(v))).collect()
}

pub fn kvlist(values: Vec<KeyValue>) -> AnyValue {
    value(Value::KvlistValue(KeyValueList { values }))
}

pub fn array(values: Vec<AnyValue>) -> AnyValue {
    value(Value::ArrayValue(ArrayValue { values }))
}

pub fn number(time: u64, v: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..NumberDataPoint::default()
    }
}

pub fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: "1".into(),
        data: Some(data),
        ..Metric::default()
    }
}

pub fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

pub fn sum(name: &str, temporality: i32, monotonic: bool, points: Vec<NumberDataPoint>) -> Metric {
    let sum = Sum {
        data_points: points,
        aggregation_temporality: temporality,
        is_monotonic: monotonic,
    };
    metric(name, Data::Sum(sum))
}

pub fn histogram_point(time: u64, bounds: Vec<f64>, counts: Vec<u64>) -> HistogramDataPoint {
    HistogramDataPoint {
        time_unix_nano: time,
        count: counts.iter().sum(),
        sum: Some(10.5),
        explicit_bounds: bounds,
        bucket_counts: counts,
        ..HistogramDataPoint::default()
    }
}

pub fn histogram(name: &str, temporality: i32, points: Vec<HistogramDataPoint>) -> Metric {
    metric(
        name,
        Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: temporality,
        }),
    )
}

pub fn exp_point(
    time: u64,
    scale: i32,
    zero: u64,
    pos: Vec<u64>,
    neg: Vec<u64>,
) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        time_unix_nano: time,
        count: zero + pos.iter().sum::<u64>() + neg.iter().sum::<u64>(),
        scale,
        zero_count: zero,
        positive: Some(Buckets {
            offset: 3,
            bucket_counts: pos,
        }),
        negative: Some(Buckets {
            offset: -2,
            bucket_counts: neg,
        }),
        ..ExponentialHistogramDataPoint::default()
    }
}

pub fn exp_histogram(name: &str, points: Vec<ExponentialHistogramDataPoint>) -> Metric {
    let h = ExponentialHistogram {
        data_points: points,
        aggregation_temporality: DELTA,
    };
    metric(name, Data::ExponentialHistogram(h))
}

pub fn summary_point(time: u64, sum: f64, quantiles: &[(f64, f64)]) -> SummaryDataPoint {
    SummaryDataPoint {
        time_unix_nano: time,
        count: 7,
        sum,
        quantile_values: quantiles
            .iter()
            .map(|&(quantile, value)| ValueAtQuantile { quantile, value })
            .collect(),
        ..SummaryDataPoint::default()
    }
}

pub fn summary(name: &str, points: Vec<SummaryDataPoint>) -> Metric {
    metric(
        name,
        Data::Summary(Summary {
            data_points: points,
        }),
    )
}

pub fn scope(name: &str, attributes: Vec<KeyValue>) -> InstrumentationScope {
    InstrumentationScope {
        name: name.into(),
        version: "1.0".into(),
        attributes,
        ..InstrumentationScope::default()
    }
}

/// A request with one resource and one scope.
pub fn request_with(
    resource: Vec<KeyValue>,
    scope: InstrumentationScope,
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope),
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

/// The encoded request of `metrics` under a default resource and scope.
pub fn request(metrics: Vec<Metric>) -> Vec<u8> {
    request_with(
        attrs(&[("service.name", "api")]),
        scope("lib", vec![]),
        metrics,
    )
    .encode_to_vec()
}

/// Appends a length-delimited field (tag, wire type 2).
fn ld(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A gauge request whose one point has an attribute nested `depth` kvlists deep, encoded by
/// hand: building it as prost structs would overflow the stack in encode and drop.
pub fn deep_kvlist_request(depth: usize) -> Vec<u8> {
    let mut value = Vec::new();
    ld(&mut value, 1, b"leaf"); // AnyValue.string_value
    for _ in 0..depth {
        let mut kv = Vec::new();
        ld(&mut kv, 1, b"k"); // KeyValue.key
        ld(&mut kv, 2, &value); // KeyValue.value
        let mut list = Vec::new();
        ld(&mut list, 1, &kv); // KeyValueList.values
        value.clear();
        ld(&mut value, 6, &list); // AnyValue.kvlist_value
    }
    let mut kv = Vec::new();
    ld(&mut kv, 1, b"deep");
    ld(&mut kv, 2, &value);
    let mut point = number(T, 1.0, vec![]).encode_to_vec();
    ld(&mut point, 7, &kv); // NumberDataPoint.attributes
    let mut gauge = Vec::new();
    ld(&mut gauge, 1, &point); // Gauge.data_points
    let mut metric = Vec::new();
    ld(&mut metric, 1, b"cpu"); // Metric.name
    ld(&mut metric, 5, &gauge); // Metric.gauge
    let mut scope_metrics = Vec::new();
    ld(&mut scope_metrics, 2, &metric); // ScopeMetrics.metrics
    let mut resource_metrics = Vec::new();
    ld(&mut resource_metrics, 2, &scope_metrics); // ResourceMetrics.scope_metrics
    let mut request = Vec::new();
    ld(&mut request, 1, &resource_metrics); // ExportMetricsServiceRequest.resource_metrics
    request
}

/// The top-level fields of an encoded message: (field number, the field's bytes, key
/// included), in order.
pub fn fields_of(mut bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let before = bytes;
        let (tag, wire_type) = decode_key(&mut bytes).unwrap();
        let skip = match wire_type {
            WireType::Varint => {
                decode_varint(&mut bytes).unwrap();
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => decode_varint(&mut bytes).unwrap() as usize,
            other => panic!("wire type {other:?}"),
        };
        bytes = &bytes[skip..];
        out.push((tag, before[..before.len() - bytes.len()].to_vec()));
    }
    out
}

/// The body of one length-delimited field (as [`fields_of`] gives it): without its key and
/// length.
pub fn body_of(field: &[u8]) -> &[u8] {
    let mut rest = field;
    prost::encoding::decode_key(&mut rest).unwrap();
    let len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
    assert_eq!(rest.len(), len, "one whole field");
    rest
}
