//! The prost-based reference of the differential tests: a [`RequestView`] turned back into
//! prost structs, and a prost-decoded request with the fields the view does not keep cleared,
//! so that the two compare as encoded bytes (NaN-safe, deterministic).

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

use crate::otlp_view::{
    AnyView, BucketsView, DataKind, KeyValueView, MetricView, NumberValue, PointView, RequestView,
    Span,
};

fn range(s: Span) -> impl Iterator<Item = usize> {
    s.start as usize..s.end as usize
}

fn kvs(v: &RequestView<'_>, pairs: &[KeyValueView<'_>]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|kv| KeyValue {
            key: kv.key.into(),
            value: Some(any(v, &kv.value)),
            ..KeyValue::default()
        })
        .collect()
}

fn any(v: &RequestView<'_>, a: &AnyView<'_>) -> AnyValue {
    let value = match *a {
        AnyView::Empty => None,
        AnyView::Str(s) => Some(Value::StringValue(s.into())),
        AnyView::Bool(b) => Some(Value::BoolValue(b)),
        AnyView::Int(i) => Some(Value::IntValue(i)),
        AnyView::Double(d) => Some(Value::DoubleValue(d)),
        AnyView::Bytes(b) => Some(Value::BytesValue(b.to_vec())),
        AnyView::Array(s) => Some(Value::ArrayValue(ArrayValue {
            values: v.array(s).iter().map(|x| any(v, x)).collect(),
        })),
        AnyView::Kvlist(s) => Some(Value::KvlistValue(KeyValueList {
            values: kvs(v, v.kvlist(s)),
        })),
        AnyView::Strindex(i) => Some(Value::StringValueStrindex(i)),
    };
    AnyValue { value }
}

fn buckets(v: &RequestView<'_>, b: Option<BucketsView>) -> Option<Buckets> {
    b.map(|b| Buckets {
        offset: b.offset,
        bucket_counts: v.counts(b.counts).to_vec(),
    })
}

fn number(v: &RequestView<'_>, p: &PointView) -> NumberDataPoint {
    NumberDataPoint {
        attributes: kvs(v, v.attrs(p.attributes)),
        start_time_unix_nano: p.start_time_unix_nano,
        time_unix_nano: p.time_unix_nano,
        flags: p.flags,
        value: p.value.map(|n| match n {
            NumberValue::Double(d) => number_data_point::Value::AsDouble(d),
            NumberValue::Int(i) => number_data_point::Value::AsInt(i),
        }),
        exemplars: vec![],
    }
}

fn data(v: &RequestView<'_>, m: &MetricView<'_>, kind: DataKind) -> Data {
    let points = || range(m.points).map(|i| &v.points[i]);
    let temporality = m.temporality;
    match kind {
        DataKind::Gauge => Data::Gauge(Gauge {
            data_points: points().map(|p| number(v, p)).collect(),
        }),
        DataKind::Sum => Data::Sum(Sum {
            data_points: points().map(|p| number(v, p)).collect(),
            aggregation_temporality: temporality,
            is_monotonic: m.monotonic,
        }),
        DataKind::Histogram => Data::Histogram(Histogram {
            aggregation_temporality: temporality,
            data_points: points()
                .map(|p| HistogramDataPoint {
                    attributes: kvs(v, v.attrs(p.attributes)),
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum,
                    bucket_counts: v.counts(p.bucket_counts).to_vec(),
                    explicit_bounds: v.bounds(p.explicit_bounds).to_vec(),
                    exemplars: vec![],
                    flags: p.flags,
                    min: p.min,
                    max: p.max,
                })
                .collect(),
        }),
        DataKind::ExponentialHistogram => Data::ExponentialHistogram(ExponentialHistogram {
            aggregation_temporality: temporality,
            data_points: points()
                .map(|p| ExponentialHistogramDataPoint {
                    attributes: kvs(v, v.attrs(p.attributes)),
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum,
                    scale: p.scale,
                    zero_count: p.zero_count,
                    positive: buckets(v, p.positive),
                    negative: buckets(v, p.negative),
                    flags: p.flags,
                    exemplars: vec![],
                    min: p.min,
                    max: p.max,
                    zero_threshold: p.zero_threshold,
                })
                .collect(),
        }),
        DataKind::Summary => Data::Summary(Summary {
            data_points: points()
                .map(|p| SummaryDataPoint {
                    attributes: kvs(v, v.attrs(p.attributes)),
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum.unwrap_or(0.0),
                    quantile_values: p
                        .quantile_values
                        .of(&v.quantiles)
                        .iter()
                        .map(|q| ValueAtQuantile {
                            quantile: q.quantile,
                            value: q.value,
                        })
                        .collect(),
                    flags: p.flags,
                })
                .collect(),
        }),
    }
}

/// The prost request a view stands for (with the fields it does not keep left empty).
pub fn to_prost(v: &RequestView<'_>) -> ExportMetricsServiceRequest {
    let metric = |m: &MetricView<'_>| Metric {
        name: m.name.into(),
        description: m.description.into(),
        unit: m.unit.into(),
        metadata: vec![],
        data: m.data.map(|k| data(v, m, k)),
    };
    let scope_metrics = |si: usize| {
        let s = &v.scopes[si];
        ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: s.name.into(),
                version: s.version.into(),
                attributes: kvs(v, v.attrs(s.attributes)),
                dropped_attributes_count: 0,
            }),
            metrics: range(s.metrics).map(|i| metric(&v.metrics[i])).collect(),
            schema_url: String::new(),
        }
    };
    ExportMetricsServiceRequest {
        resource_metrics: v
            .resources
            .iter()
            .map(|r| ResourceMetrics {
                resource: Some(Resource {
                    attributes: kvs(v, v.attrs(r.attributes)),
                    ..Resource::default()
                }),
                scope_metrics: range(r.scopes).map(scope_metrics).collect(),
                schema_url: String::new(),
            })
            .collect(),
    }
}

fn clear_kvs(kvs: &mut [KeyValue]) {
    for kv in kvs {
        kv.key_strindex = 0;
        let mut value = kv.value.take().unwrap_or_default();
        clear_any(&mut value);
        kv.value = Some(value);
    }
}

fn clear_any(a: &mut AnyValue) {
    match &mut a.value {
        Some(Value::ArrayValue(arr)) => arr.values.iter_mut().for_each(clear_any),
        Some(Value::KvlistValue(l)) => clear_kvs(&mut l.values),
        _ => {}
    }
}

/// Clears what a view does not keep and fills absent resource/scope/value with defaults.
pub fn normalize(mut req: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest {
    for rm in &mut req.resource_metrics {
        rm.schema_url.clear();
        let r = rm.resource.get_or_insert_with(Resource::default);
        r.dropped_attributes_count = 0;
        r.entity_refs.clear();
        clear_kvs(&mut r.attributes);
        for sm in &mut rm.scope_metrics {
            sm.schema_url.clear();
            let s = sm.scope.get_or_insert_with(InstrumentationScope::default);
            s.dropped_attributes_count = 0;
            clear_kvs(&mut s.attributes);
            for m in &mut sm.metrics {
                m.metadata.clear();
                match &mut m.data {
                    Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| {
                        p.exemplars.clear();
                        clear_kvs(&mut p.attributes);
                    }),
                    Some(Data::Sum(g)) => g.data_points.iter_mut().for_each(|p| {
                        p.exemplars.clear();
                        clear_kvs(&mut p.attributes);
                    }),
                    Some(Data::Histogram(g)) => g.data_points.iter_mut().for_each(|p| {
                        p.exemplars.clear();
                        clear_kvs(&mut p.attributes);
                    }),
                    Some(Data::ExponentialHistogram(g)) => g.data_points.iter_mut().for_each(|p| {
                        p.exemplars.clear();
                        clear_kvs(&mut p.attributes);
                    }),
                    Some(Data::Summary(g)) => g
                        .data_points
                        .iter_mut()
                        .for_each(|p| clear_kvs(&mut p.attributes)),
                    None => {}
                }
            }
        }
    }
    req
}
