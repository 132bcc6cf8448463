//! What phase one of an ingest produces: validated points with their series keys, pre-encoded
//! rows, and the request they borrow names and attributes from.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Metric};

use crate::reject::{Reason, Reject, Rejections};
use crate::series::{MetricKind, MetricShape, SeriesKey, Temporality};

/// Admission limits (the Python `CoreLimits`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_attributes: usize,
    pub max_attribute_value_bytes: usize,
    pub max_name_bytes: usize,
    pub max_past_ns: i64,
    pub max_future_ns: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attributes: 128,
            max_attribute_value_bytes: 4096,
            max_name_bytes: 1024,
            max_past_ns: 30 * 86_400 * 1_000_000_000,
            max_future_ns: 3_600 * 1_000_000_000,
        }
    }
}

/// The three tables that get one row per point, indexes into `StagedRequest::rows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowTable {
    Histogram = 0,
    ExpHistogram = 1,
    Summary = 2,
}

/// Where a point sits in the request (indexes), to build its `series` row later.
#[derive(Clone, Copy, Debug)]
pub struct PointOrigin {
    pub resource: u32,
    pub scope: u32,
    pub metric: u32,
    pub point: u32,
}

/// What an accepted point carries into the buffers.
#[derive(Clone, Copy, Debug)]
pub enum Payload {
    /// A Gauge or Sum point, for a chunk; `start_ns` is 0 for gauges and unset starts.
    Number {
        value: f64,
        start_ns: i64,
        is_sum: bool,
    },
    /// A row already encoded in `StagedRequest::rows[table][start..end]`.
    Row {
        table: RowTable,
        start: u32,
        end: u32,
    },
}

/// A validated point with its series key.
#[derive(Clone, Copy, Debug)]
pub struct StagedPoint {
    pub key: SeriesKey,
    pub origin: PointOrigin,
    pub time_ns: i64,
    pub payload: Payload,
}

/// The outcome of phase one.
pub struct StagedRequest {
    pub request: ExportMetricsServiceRequest,
    pub points: Vec<StagedPoint>,
    /// Encoded COPY tuples (no header) per [`RowTable`].
    pub rows: [Vec<u8>; 3],
    pub rejections: Rejections,
    /// Every data point in the request, accepted or not.
    pub total_points: u64,
}

impl StagedRequest {
    /// The metric a point came from.
    pub fn metric(&self, o: PointOrigin) -> &Metric {
        let rm = &self.request.resource_metrics[o.resource as usize];
        &rm.scope_metrics[o.scope as usize].metrics[o.metric as usize]
    }

    /// The resource attributes and scope a point came from.
    pub fn resource_and_scope(
        &self,
        o: PointOrigin,
    ) -> (&[KeyValue], Option<&InstrumentationScope>) {
        let rm = &self.request.resource_metrics[o.resource as usize];
        let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        (resource, rm.scope_metrics[o.scope as usize].scope.as_ref())
    }
}

/// The identity shape of a metric, or the rejection of all its points.
pub fn metric_shape(data: &Data) -> Result<MetricShape, Reject> {
    let temporality = |t| {
        Temporality::from_otlp(t).map(Some).ok_or(Reject::new(
            Reason::UnspecifiedTemporality,
            "aggregation_temporality must be DELTA or CUMULATIVE",
        ))
    };
    let (kind, temporality, monotonic) = match data {
        Data::Gauge(_) => (MetricKind::Gauge, None, None),
        Data::Sum(s) => (
            MetricKind::Sum,
            temporality(s.aggregation_temporality)?,
            Some(s.is_monotonic),
        ),
        Data::Histogram(h) => (
            MetricKind::Histogram,
            temporality(h.aggregation_temporality)?,
            None,
        ),
        Data::ExponentialHistogram(h) => (
            MetricKind::ExponentialHistogram,
            temporality(h.aggregation_temporality)?,
            None,
        ),
        Data::Summary(_) => (MetricKind::Summary, None, None),
    };
    Ok(MetricShape {
        kind,
        temporality,
        monotonic,
    })
}

/// Data points in a metric.
pub fn point_count(metric: &Metric) -> usize {
    match &metric.data {
        None => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }
}

/// The attributes of point `i` of a metric.
pub fn point_attributes(metric: &Metric, i: usize) -> &[KeyValue] {
    match &metric.data {
        None => &[],
        Some(Data::Gauge(g)) => &g.data_points[i].attributes,
        Some(Data::Sum(s)) => &s.data_points[i].attributes,
        Some(Data::Histogram(h)) => &h.data_points[i].attributes,
        Some(Data::ExponentialHistogram(h)) => &h.data_points[i].attributes,
        Some(Data::Summary(s)) => &s.data_points[i].attributes,
    }
}
