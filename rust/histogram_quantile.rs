//! Quantiles from bucket counts, as Prometheus' `histogram_quantile` estimates them: find the
//! bucket holding the rank, interpolate linearly inside it. The open-ended first and last
//! buckets are closed by the observed min and max when known (else by the nearest bound).

/// The estimated value at quantile `q` of a histogram with `bounds` (strictly increasing,
/// upper-inclusive) and `counts` (`bounds.len() + 1` of them); `None` when it is empty.
pub fn quantile(bounds: &[f64], counts: &[u64], q: f64, min: f64, max: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || counts.len() != bounds.len() + 1 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 || ((below + c) as f64) < rank {
            below += c;
            continue;
        }
        let lower = if i == 0 {
            if min.is_finite() {
                min
            } else {
                bounds.first().copied().unwrap_or(0.0)
            }
        } else {
            bounds[i - 1]
        };
        let upper = if i == bounds.len() {
            if max.is_finite() {
                max
            } else {
                bounds.last().copied().unwrap_or(lower)
            }
        } else {
            bounds[i]
        };
        // Observed extremes tighten the bucket: no value lies outside [min, max].
        let lower = if min.is_finite() {
            lower.max(min)
        } else {
            lower
        };
        let upper = if max.is_finite() {
            upper.min(max)
        } else {
            upper
        };
        let fraction = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
        return Some(lower + (upper - lower).max(0.0) * fraction);
    }
    None
}
