//! COPY tuples of every table, column for column as in `migrations/0001_metrics.sql`.

use serde_json::json;

use crate::attributes::attributes_json;
use crate::buffer::ChunkBuf;
use crate::copy_binary::Tuple;
use crate::histogram_chunks::HistogramChunk;
use crate::otlp_view::{KeyValueView, PointView, RequestView, ScopeView};
use crate::series::{MetricShape, SeriesKey, Temporality};
use crate::validate::start_ns;

/// `exp_histogram_points`: time, series_id, start_time, count, sum, min, max, scale,
/// zero_count, zero_threshold, positive_offset, positive_counts, negative_offset,
/// negative_counts. A missing bucket range is offset 0 with no counts.
pub fn exp_histogram_row(
    buf: &mut Vec<u8>,
    view: &RequestView<'_>,
    id: u64,
    time_ns: i64,
    p: &PointView,
) {
    let (pos_offset, pos_counts) = view.buckets(p.positive);
    let (neg_offset, neg_counts) = view.buckets(p.negative);
    Tuple::begin(buf, 14)
        .timestamptz_ns(time_ns)
        .int8(id as i64)
        .timestamptz_ns_or_null(start_ns(p.start_time_unix_nano))
        .int8(p.count as i64)
        .opt_float8(p.sum)
        .opt_float8(p.min)
        .opt_float8(p.max)
        .int4(p.scale)
        .int8(p.zero_count as i64)
        .float8(p.zero_threshold)
        .int4(pos_offset)
        .int8_array(pos_counts)
        .int4(neg_offset)
        .int8_array(neg_counts);
}

/// `summary_points`: time, series_id, start_time, count, sum, quantiles, quantile_values.
pub fn summary_row(
    buf: &mut Vec<u8>,
    view: &RequestView<'_>,
    id: u64,
    time_ns: i64,
    p: &PointView,
) {
    let quantiles = p.quantile_values.of(&view.quantiles);
    Tuple::begin(buf, 7)
        .timestamptz_ns(time_ns)
        .int8(id as i64)
        .timestamptz_ns_or_null(start_ns(p.start_time_unix_nano))
        .int8(p.count as i64)
        .float8(p.sum.unwrap_or(0.0))
        .float8_array(quantiles.iter().map(|q| q.quantile))
        .float8_array(quantiles.iter().map(|q| q.value));
}

/// `point_chunks`: series_id, start_time (earliest point), end_time (latest point),
/// point_count, point_times, point_values, point_start_times (NULL for gauges).
pub fn chunk_row(buf: &mut Vec<u8>, id: u64, chunk: &ChunkBuf) {
    let start = chunk.times.iter().copied().min().unwrap_or(0);
    let end = chunk.times.iter().copied().max().unwrap_or(0);
    let count = i32::try_from(chunk.times.len()).expect("chunk of more than 2^31 points");
    let mut t = Tuple::begin(buf, 7);
    t.int8(id as i64)
        .timestamptz_ns(start)
        .timestamptz_ns(end)
        .int4(count)
        .timestamptz_array_ns(&chunk.times)
        .float8_array(chunk.values.iter().copied());
    match &chunk.start_times {
        Some(starts) => t.timestamptz_array_ns(starts),
        None => t.null(),
    };
}

/// `histogram_chunks`: series_id, start_time (earliest point), end_time (latest point),
/// point_count, point_times, point_start_times, counts, sums, mins, maxs, bounds,
/// bucket_counts (flattened, point-major). Unset starts and absent sum/min/max are NULL
/// elements.
pub fn histogram_chunk_row(buf: &mut Vec<u8>, id: u64, chunk: &HistogramChunk) {
    let start = chunk.times.iter().copied().min().unwrap_or(0);
    let end = chunk.times.iter().copied().max().unwrap_or(0);
    let count = i32::try_from(chunk.times.len()).expect("chunk of more than 2^31 points");
    Tuple::begin(buf, 12)
        .int8(id as i64)
        .timestamptz_ns(start)
        .timestamptz_ns(end)
        .int4(count)
        .timestamptz_array_ns(&chunk.times)
        .timestamptz_array_ns(&chunk.start_times)
        .int8_array(&chunk.counts)
        .opt_float8_array(&chunk.sums)
        .opt_float8_array(&chunk.mins)
        .opt_float8_array(&chunk.maxs)
        .float8_array(chunk.bounds.iter().copied())
        .int8_array(&chunk.bucket_counts);
}

/// Everything a `series` row holds, borrowed from the request.
pub struct SeriesRow<'a> {
    /// The request the strings and attributes below belong to (for nested values).
    pub view: &'a RequestView<'a>,
    pub tenant: &'a str,
    pub key: SeriesKey,
    pub metric_name: &'a str,
    pub shape: MetricShape,
    pub unit: &'a str,
    pub description: &'a str,
    pub resource: &'a [KeyValueView<'a>],
    pub scope: &'a ScopeView<'a>,
    pub attributes: &'a [KeyValueView<'a>],
    pub first_seen_ns: i64,
}

/// The columns of a `series` COPY tuple, in order (the writer names them in its COPY).
pub const SERIES_COLUMNS: [&str; 13] = [
    "id",
    "fingerprint",
    "metric_name",
    "metric_type",
    "temporality",
    "monotonic",
    "unit",
    "description",
    "resource",
    "scope",
    "attributes",
    "first_seen",
    "tenant",
];

/// A tuple of the staging table of `series`, columns as in [`SERIES_COLUMNS`].
pub fn series_row(buf: &mut Vec<u8>, row: &SeriesRow<'_>) {
    let view = row.view;
    let resource = attributes_json(view, row.resource).to_string();
    let scope = json!({
        "name": row.scope.name,
        "version": row.scope.version,
        "attributes": attributes_json(view, view.attrs(row.scope.attributes)),
    })
    .to_string();
    let attributes = attributes_json(view, row.attributes).to_string();
    Tuple::begin(buf, SERIES_COLUMNS.len() as i16)
        .int8(row.key.id as i64)
        .int8(row.key.fingerprint as i64)
        .text(row.metric_name)
        .text(row.shape.kind.as_str())
        .opt_text(row.shape.temporality.map(Temporality::as_str))
        .opt_bool(row.shape.monotonic)
        .text(row.unit)
        .text(row.description)
        .jsonb(resource.as_bytes())
        .jsonb(scope.as_bytes())
        .jsonb(attributes.as_bytes())
        .timestamptz_ns(row.first_seen_ns)
        .text(row.tenant);
}
