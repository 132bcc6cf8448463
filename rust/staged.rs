//! What phase one of an ingest produces: validated points with their series keys, pre-encoded
//! rows, and the request view they borrow names and attributes from.

use crate::otlp_decode::decode_lazy_point;
use crate::otlp_view::{DataKind, KeyValueView, MetricView, RequestView, ScopeView};

use crate::reject::{Reason, Reject, Rejections};
use crate::series::{MetricKind, MetricShape, SeriesKey, Temporality};
use crate::tenants::TenantIndex;

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

/// The tables that get one row per point, indexes into `StagedRequest::rows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowTable {
    ExpHistogram = 0,
    Summary = 1,
}

/// Number of [`RowTable`]s.
pub const ROW_TABLES: usize = 2;

/// Where a point sits in the request: indexes into the arenas of its [`RequestView`], to build
/// its `series` row later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointOrigin {
    pub resource: u32,
    pub scope: u32,
    pub metric: u32,
    pub point: u32,
}

/// What an accepted point carries into the buffers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Payload {
    /// A Gauge or Sum point, for a chunk; `start_ns` is 0 for gauges and unset starts.
    Number {
        value: f64,
        start_ns: i64,
        is_sum: bool,
    },
    /// An explicit-bucket histogram point, for a histogram chunk; its columns are read from the
    /// request view at append time. `start_ns` is 0 when unset; `layout_hash` is
    /// `BucketLayout::hash`, computed here so that the shard lock is held for less.
    Histogram { start_ns: i64, layout_hash: u64 },
    /// A row already encoded in `StagedRequest::rows[table][start..end]`.
    Row {
        table: RowTable,
        start: u32,
        end: u32,
    },
}

/// A validated point with its series key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StagedPoint {
    pub key: SeriesKey,
    pub origin: PointOrigin,
    pub time_ns: i64,
    pub payload: Payload,
}

/// The outcome of phase one, borrowing the request bytes.
pub struct StagedRequest<'a> {
    pub view: RequestView<'a>,
    /// The tenant's index in the core's `Tenants` (set by the core after staging).
    pub tenant: TenantIndex,
    pub points: Vec<StagedPoint>,
    /// Encoded COPY tuples (no header) per [`RowTable`].
    pub rows: [Vec<u8>; ROW_TABLES],
    pub rejections: Rejections,
    /// Every data point in the request, accepted or not.
    pub total_points: u64,
}

impl<'a> StagedRequest<'a> {
    /// The metric a point came from.
    pub fn metric(&self, o: PointOrigin) -> &MetricView<'a> {
        &self.view.metrics[o.metric as usize]
    }

    /// The resource attributes and scope a point came from.
    pub fn resource_and_scope(&self, o: PointOrigin) -> (&[KeyValueView<'a>], &ScopeView<'a>) {
        let resource = self.view.resources[o.resource as usize].attributes;
        (
            self.view.attrs(resource),
            &self.view.scopes[o.scope as usize],
        )
    }

    /// Decodes the attributes that `decode_request_lazy` left undecoded of the staged points
    /// at `indexes` (their series rows need them).
    pub fn decode_lazy_attributes(&mut self, indexes: &[usize]) {
        for &i in indexes {
            decode_lazy_point(&mut self.view, self.points[i].origin.point as usize);
        }
    }

    /// The attributes of the point a staged point came from.
    pub fn point_attributes(&self, o: PointOrigin) -> &[KeyValueView<'a>] {
        self.view
            .attrs(self.view.points[o.point as usize].attributes)
    }
}

/// The identity shape of a metric with data, or the rejection of all its points.
pub fn metric_shape(metric: &MetricView<'_>, kind: DataKind) -> Result<MetricShape, Reject> {
    let temporality = || {
        Temporality::from_otlp(metric.temporality)
            .map(Some)
            .ok_or(Reject::new(
                Reason::UnspecifiedTemporality,
                "aggregation_temporality must be DELTA or CUMULATIVE",
            ))
    };
    let (kind, temporality, monotonic) = match kind {
        DataKind::Gauge => (MetricKind::Gauge, None, None),
        DataKind::Sum => (MetricKind::Sum, temporality()?, Some(metric.monotonic)),
        DataKind::Histogram => (MetricKind::Histogram, temporality()?, None),
        DataKind::ExponentialHistogram => (MetricKind::ExponentialHistogram, temporality()?, None),
        DataKind::Summary => (MetricKind::Summary, None, None),
    };
    Ok(MetricShape {
        kind,
        temporality,
        monotonic,
    })
}
