//! Rollup rows: closed windows as `rollups` COPY tuples, and the hour level built from them.

use std::sync::Arc;

use crate::copy_binary::{write_header, write_trailer, Tuple};
use crate::tenants::TenantSlot;
use crate::window_agg::{Detail, WindowAgg};
use crate::windows::{
    OpenWindows, RollupSettings, TakenWindows, WindowKey, HOUR_NS, NS_PER_SECOND,
};

/// The quantiles precomputed into columns `p50` … `p999`, for plain SQL readers.
pub const PRECOMPUTED_QUANTILES: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

/// The columns of a `rollups` COPY tuple, in order (the writer names them in its COPY).
pub const ROLLUP_COLUMNS: [&str; 30] = [
    "series_id",
    "window_start",
    "window_seconds",
    "epoch_start",
    "points",
    "count",
    "sum",
    "min",
    "max",
    "first_time",
    "first_value",
    "last_time",
    "last_value",
    "digest",
    "p50",
    "p90",
    "p95",
    "p99",
    "p999",
    "bounds",
    "bucket_counts",
    "exp_scale",
    "exp_zero_count",
    "exp_positive_offset",
    "exp_positive",
    "exp_negative_offset",
    "exp_negative",
    "quantiles",
    "quantile_values",
    "tenant",
];

/// The resolution of the rows given to [`encode`].
#[derive(Clone, Copy)]
pub enum Resolution<'a> {
    /// Windows, whose length depends on when they start.
    Window(&'a RollupSettings),
    Hour,
}

impl Resolution<'_> {
    fn seconds(&self, start_ns: i64) -> i32 {
        let ns = match self {
            Resolution::Window(settings) => settings.window_ns_at(start_ns),
            Resolution::Hour => HOUR_NS,
        };
        (ns / NS_PER_SECOND) as i32
    }
}

/// Hour partials of the closed windows this process wrote, merged as windows close: the
/// hour level comes from the windows' digests and counts, never from raw points. Like a
/// window, an hour that gets more data after it was written becomes another partial row.
#[derive(Default)]
pub struct HourWindows {
    open: OpenWindows,
}

impl HourWindows {
    /// Merges a closed window into its hour.
    pub fn absorb(&mut self, key: WindowKey, agg: Box<WindowAgg>) {
        let hour = WindowKey {
            start_ns: key.start_ns - key.start_ns.rem_euclid(HOUR_NS),
            ..key
        };
        self.open.merge(hour, agg);
    }

    /// Removes and returns the hours whose last window has closed (every hour when `all`).
    pub fn take_closed(
        &mut self,
        now_ns: i64,
        settings: &RollupSettings,
        all: bool,
    ) -> TakenWindows {
        self.open
            .take_started_by(settings.hour_horizon(now_ns), all)
    }

    /// No spool record below this one holds data of an open hour (`u64::MAX` when none).
    pub fn min_seq(&self) -> u64 {
        self.open.min_seq()
    }

    /// Hours currently open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no hour is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// Encodes rows of one resolution, sorted by key (so the btree is filled in order and the
/// output does not depend on hash-map order), each naming its tenant from `tenants` (indexed
/// by `WindowKey::tenant`); returns the rows written.
pub fn encode(
    buf: &mut Vec<u8>,
    rows: &mut [(WindowKey, Box<WindowAgg>)],
    resolution: Resolution<'_>,
    tenants: &[Arc<TenantSlot>],
) -> u64 {
    if rows.is_empty() {
        return 0;
    }
    if buf.is_empty() {
        write_header(buf);
    }
    rows.sort_unstable_by_key(|(k, _)| (k.series as i64, k.start_ns, k.epoch_ns, k.layout));
    for (key, agg) in rows.iter_mut() {
        let tenant = &tenants[key.tenant as usize].name;
        rollup_row(buf, key, agg, resolution.seconds(key.start_ns), tenant);
    }
    rows.len() as u64
}

/// Ends a COPY stream that [`encode`] started.
pub fn finish(buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        write_trailer(buf);
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn rollup_row(
    buf: &mut Vec<u8>,
    key: &WindowKey,
    agg: &mut WindowAgg,
    window_seconds: i32,
    tenant: &str,
) {
    let digest = agg.row_digest().map(|d| d.to_bytes());
    let mut t = Tuple::begin(buf, ROLLUP_COLUMNS.len() as i16);
    t.int8(key.series as i64)
        .timestamptz_ns(key.start_ns)
        .int4(window_seconds)
        .timestamptz_ns_or_null(key.epoch_ns)
        .int8(agg.points as i64)
        .int8(agg.count as i64)
        .opt_float8(finite(agg.sum))
        .opt_float8(finite(agg.min))
        .opt_float8(finite(agg.max))
        .timestamptz_ns(agg.first_ns)
        .opt_float8(finite(agg.first_value))
        .timestamptz_ns(agg.last_ns)
        .opt_float8(finite(agg.last_value));
    match &digest {
        Some(bytes) => t.bytea(bytes),
        None => t.null(),
    };
    for q in PRECOMPUTED_QUANTILES {
        t.opt_float8(agg.quantile(q).filter(|v| v.is_finite()));
    }
    match &agg.detail {
        Detail::Explicit(e) => {
            t.float8_array(e.bounds.iter().copied())
                .int8_array(&e.counts);
        }
        _ => {
            t.null().null();
        }
    }
    match &agg.detail {
        Detail::Exponential(e) => {
            t.int4(e.scale)
                .int8(e.zero_count as i64)
                .int4(e.positive.offset)
                .int8_array(&e.positive.counts)
                .int4(e.negative.offset)
                .int8_array(&e.negative.counts);
        }
        _ => {
            (0..6).for_each(|_| {
                t.null();
            });
        }
    }
    match &agg.detail {
        Detail::Summary(quantiles) => {
            t.float8_array(quantiles.iter().map(|q| q.0))
                .float8_array(quantiles.iter().map(|q| q.1));
        }
        _ => {
            t.null().null();
        }
    }
    t.text(tenant);
}
