//! Buffers that hold accepted points between `take_batch` calls.

use crate::copy_binary::{write_header, write_trailer};
use crate::histogram_chunks::HistogramChunkMap;
use crate::series::{IdMap, SeriesRegistry};
use crate::windows::Windows;

/// Nanoseconds in a UTC day: partitions are per day.
pub const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The UTC day (days since 1970-01-01) of a Unix-nanosecond time.
pub fn utc_day(time_ns: i64) -> i64 {
    time_ns.div_euclid(NS_PER_DAY)
}

/// The points of one Gauge or Sum series within one UTC day, in arrival order (not sorted:
/// OTLP senders send points in time order, and the view `metric_points` does not depend on
/// the order inside a chunk). Becomes one `point_chunks` row.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChunkBuf {
    /// Point times, Unix ns.
    pub times: Vec<i64>,
    /// Point values.
    pub values: Vec<f64>,
    /// Sum points only: start times, Unix ns, 0 when unset (a NULL element).
    pub start_times: Option<Vec<i64>>,
}

impl ChunkBuf {
    /// An empty chunk; `is_sum` selects whether start times are kept.
    pub fn new(is_sum: bool) -> Self {
        ChunkBuf {
            start_times: is_sum.then(Vec::new),
            ..ChunkBuf::default()
        }
    }

    /// Appends one point.
    pub fn push(&mut self, time_ns: i64, value: f64, start_ns: i64) {
        self.times.push(time_ns);
        self.values.push(value);
        if let Some(starts) = &mut self.start_times {
            starts.push(start_ns);
        }
    }
}

/// Chunks keyed by (series id, UTC day).
pub type ChunkMap = IdMap<(u64, i64), ChunkBuf>;

/// One shard of the core's state: the series whose id falls in it, their chunks and their
/// open windows (in the shard, so that the registry check and the appends are one step
/// under its lock).
#[derive(Default)]
pub struct Shard {
    pub registry: SeriesRegistry,
    pub chunks: ChunkMap,
    pub histograms: HistogramChunkMap,
    pub windows: Windows,
}

/// Encoded COPY tuples of one table, with the stream header already written.
#[derive(Debug, Default)]
pub struct RowBuffer {
    bytes: Vec<u8>,
    /// Rows in `bytes`.
    pub rows: u64,
    /// Distinct UTC days of the rows, sorted.
    pub days: Vec<i64>,
}

impl RowBuffer {
    /// Appends `rows` already-encoded tuples.
    pub fn append(&mut self, tuples: &[u8], rows: u64) {
        if rows == 0 {
            return;
        }
        if self.bytes.is_empty() {
            // Reserve generously: buffers refill to a similar size after every flush.
            self.bytes.reserve(tuples.len().max(1 << 16));
            write_header(&mut self.bytes);
        }
        self.bytes.extend_from_slice(tuples);
        self.rows += rows;
    }

    /// Records that a row falls in `day`.
    pub fn add_day(&mut self, day: i64) {
        if let Err(i) = self.days.binary_search(&day) {
            self.days.insert(i, day);
        }
    }

    /// The complete COPY stream (header, rows, trailer), or empty bytes when there are no rows.
    pub fn finish(mut self) -> Vec<u8> {
        if self.rows > 0 {
            write_trailer(&mut self.bytes);
        }
        self.bytes
    }
}

/// New `series` rows, and their ids (so that a failed write can be forgotten).
#[derive(Debug, Default)]
pub struct SeriesRows {
    pub rows: RowBuffer,
    pub ids: Vec<u64>,
}
