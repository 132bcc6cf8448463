//! Per-point and per-metric checks that do not involve attributes (see `attributes.rs`).

use crate::otlp_view::{MetricView, NumberValue, PointView, RequestView};
use crate::reject::{Reason, Reject};

/// OTLP `DataPointFlags.FLAG_NO_RECORDED_VALUE`: the point is a staleness marker.
pub const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// Exponential histogram scales accepted (the OTLP SDKs use [-10, 20]).
const SCALES: std::ops::RangeInclusive<i32> = -10..=20;

/// The accepted window of point times around the ingest time.
#[derive(Clone, Copy, Debug)]
pub struct TimeWindow {
    pub now_ns: i64,
    pub max_past_ns: i64,
    pub max_future_ns: i64,
}

impl TimeWindow {
    /// Returns the point time as i64 ns when it is set and inside the window.
    pub fn check(&self, time_unix_nano: u64) -> Result<i64, Reject> {
        if time_unix_nano == 0 {
            return Err(Reject::new(Reason::MissingTimestamp, "time_unix_nano is 0"));
        }
        let future = Reject::new(Reason::TimestampInFuture, "");
        let t = i64::try_from(time_unix_nano).map_err(|_| future)?;
        if t < self.now_ns.saturating_sub(self.max_past_ns) {
            return Err(Reject::new(Reason::TimestampTooOld, ""));
        }
        if t > self.now_ns.saturating_add(self.max_future_ns) {
            return Err(future);
        }
        Ok(t)
    }
}

/// OTLP start times are unvalidated u64; anything past i64::MAX is treated as unset.
pub fn start_ns(start_time_unix_nano: u64) -> i64 {
    i64::try_from(start_time_unix_nano).unwrap_or(0)
}

/// Checks name, unit and description of a metric (they become `text` columns).
pub fn check_metric(metric: &MetricView<'_>, max_name_bytes: usize) -> Result<(), Reject> {
    let invalid = |detail| Err(Reject::new(Reason::InvalidName, detail));
    if metric.name.is_empty() {
        return invalid("name is empty");
    }
    if metric.name.len() > max_name_bytes {
        return invalid("name is too long");
    }
    if metric.name.contains('\0') {
        return invalid("name contains NUL");
    }
    if metric.unit.len() > max_name_bytes {
        return invalid("unit is too long");
    }
    if metric.unit.contains('\0') || metric.description.contains('\0') {
        return invalid("unit or description contains NUL");
    }
    Ok(())
}

fn non_finite(v: f64, what: [&'static str; 3]) -> Result<(), Reject> {
    let detail = if v.is_nan() {
        what[0]
    } else if v > 0.0 {
        what[1]
    } else if v < 0.0 {
        what[2]
    } else {
        return Ok(());
    };
    Err(Reject::new(Reason::NonFiniteValue, detail))
}

fn finite_or(v: f64, detail: &'static str) -> Result<(), Reject> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Reject::new(Reason::NonFiniteValue, detail))
    }
}

/// The value of a Gauge or Sum point as f64 (ints are converted, like `as_int as f64`).
pub fn number_value(point: &PointView) -> Result<f64, Reject> {
    match point.value {
        None => Err(Reject::new(Reason::MissingValue, "")),
        Some(NumberValue::Int(i)) => Ok(i as f64),
        Some(NumberValue::Double(d)) if d.is_finite() => Ok(d),
        Some(NumberValue::Double(d)) => {
            non_finite(d, ["value is NaN", "value is +Inf", "value is -Inf"]).map(|()| d)
        }
    }
}

/// Checks a histogram point: finite sum/min/max; bucket counts one more than bounds (or both
/// empty); bounds finite and strictly increasing; bucket counts adding up to `count`.
pub fn check_histogram(view: &RequestView<'_>, p: &PointView) -> Result<(), Reject> {
    for v in [p.sum, p.min, p.max].into_iter().flatten() {
        finite_or(v, "histogram sum, min or max is not finite")?;
    }
    let invalid = |detail| Err(Reject::new(Reason::InvalidHistogram, detail));
    let (counts, bounds) = (view.counts(p.bucket_counts), view.bounds(p.explicit_bounds));
    if counts.is_empty() && bounds.is_empty() {
        return Ok(());
    }
    if counts.len() != bounds.len() + 1 {
        return invalid("bucket_counts must have one more entry than explicit_bounds");
    }
    if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
        return invalid("explicit_bounds must be finite and strictly increasing");
    }
    let total: u128 = counts.iter().map(|&c| u128::from(c)).sum();
    if total != u128::from(p.count) {
        return invalid("bucket_counts do not add up to count");
    }
    Ok(())
}

/// Checks an exponential histogram point: finite sum/min/max/zero_threshold, scale in
/// [-10, 20], positive + negative + zero counts adding up to `count`.
pub fn check_exp_histogram(view: &RequestView<'_>, p: &PointView) -> Result<(), Reject> {
    for v in [p.sum, p.min, p.max, Some(p.zero_threshold)]
        .into_iter()
        .flatten()
    {
        finite_or(v, "sum, min, max or zero_threshold is not finite")?;
    }
    let invalid = |detail| Err(Reject::new(Reason::InvalidExponentialHistogram, detail));
    if !SCALES.contains(&p.scale) {
        return invalid("scale outside [-10, 20]");
    }
    let (positive, negative) = (view.buckets(p.positive).1, view.buckets(p.negative).1);
    let total: u128 = positive
        .iter()
        .chain(negative)
        .map(|&c| u128::from(c))
        .sum::<u128>()
        + u128::from(p.zero_count);
    if total != u128::from(p.count) {
        return invalid("bucket counts and zero_count do not add up to count");
    }
    Ok(())
}

/// Checks a summary point: finite sum and quantile values, quantiles within [0, 1].
pub fn check_summary(view: &RequestView<'_>, p: &PointView) -> Result<(), Reject> {
    finite_or(p.sum.unwrap_or(0.0), "summary sum is not finite")?;
    for q in p.quantile_values.of(&view.quantiles) {
        if !(0.0..=1.0).contains(&q.quantile) {
            return Err(Reject::new(
                Reason::InvalidSummary,
                "quantile outside [0, 1]",
            ));
        }
        finite_or(q.value, "quantile value is not finite")?;
    }
    Ok(())
}
