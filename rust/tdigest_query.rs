//! Quantile and rank estimates of a compressed t-digest (the interpolation is described in
//! `tdigest`'s module documentation). Both follow the reference implementation's
//! `MergingDigest.quantile` and `cdf`, with weight-1 centroids treated as exact values.

use crate::tdigest::TDigest;

/// The value at rank fraction `q`; the digest is non-empty, compressed, `q` within `[0, 1]`.
pub(crate) fn quantile(d: &TDigest, q: f64) -> f64 {
    let c = &d.centroids;
    let n = d.count as f64;
    let index = q * n;
    let first = c[0];
    let last = c[c.len() - 1];
    let (w_first, w_last) = (first.weight as f64, last.weight as f64);
    if index < 1.0 {
        return d.min;
    }
    // Half of the first centroid lies between `min` and its mean; the value `min` itself is
    // one of its points, hence the `- 1`.
    if first.weight > 1 && index < w_first / 2.0 {
        return d.min + (index - 1.0) / (w_first / 2.0 - 1.0) * (first.mean - d.min);
    }
    if index > n - 1.0 {
        return d.max;
    }
    if last.weight > 1 && n - index <= w_last / 2.0 {
        return d.max - (n - index - 1.0) / (w_last / 2.0 - 1.0) * (d.max - last.mean);
    }
    let mut weight_so_far = w_first / 2.0;
    for pair in c.windows(2) {
        let (left, right) = (pair[0], pair[1]);
        let dw = (left.weight + right.weight) as f64 / 2.0;
        if weight_so_far + dw > index {
            // A weight-1 centroid is one value: it owns half a unit of rank on each side.
            let mut left_unit = 0.0;
            if left.weight == 1 {
                if index - weight_so_far < 0.5 {
                    return left.mean;
                }
                left_unit = 0.5;
            }
            let mut right_unit = 0.0;
            if right.weight == 1 {
                if weight_so_far + dw - index <= 0.5 {
                    return right.mean;
                }
                right_unit = 0.5;
            }
            let z1 = index - weight_so_far - left_unit;
            let z2 = weight_so_far + dw - index - right_unit;
            return weighted_average(left.mean, z2, right.mean, z1);
        }
        weight_so_far += dw;
    }
    // Only rounding reaches this point: `index` is within the last centroid's upper half.
    d.max
}

/// The mid-rank fraction of `x`; the digest is non-empty, compressed, `x` not NaN.
pub(crate) fn rank(d: &TDigest, x: f64) -> f64 {
    let c = &d.centroids;
    let n = d.count as f64;
    if x < d.min {
        return 0.0;
    }
    if x > d.max {
        return 1.0;
    }
    if d.min == d.max {
        return 0.5;
    }
    let first = c[0];
    let last = c[c.len() - 1];
    if x < first.mean {
        // Between `min` (one point, at rank 0.5) and the first mean (rank w/2).
        let span = first.mean - d.min;
        if x == d.min {
            return 0.5 / n;
        }
        let frac = (x - d.min) / span;
        return (1.0 + frac * (first.weight as f64 / 2.0 - 1.0)) / n;
    }
    if x > last.mean {
        let span = d.max - last.mean;
        if x == d.max {
            return 1.0 - 0.5 / n;
        }
        let frac = (d.max - x) / span;
        return 1.0 - (1.0 + frac * (last.weight as f64 / 2.0 - 1.0)) / n;
    }
    let mut weight_so_far = 0.0;
    let mut i = 0;
    while i < c.len() {
        if c[i].mean == x {
            // Every centroid at exactly `x` counts half.
            let mut equal = 0.0;
            while i < c.len() && c[i].mean == x {
                equal += c[i].weight as f64;
                i += 1;
            }
            return (weight_so_far + equal / 2.0) / n;
        }
        if i + 1 == c.len() {
            break;
        }
        let (left, right) = (c[i], c[i + 1]);
        if left.mean < x && x < right.mean {
            let (wl, wr) = (left.weight as f64, right.weight as f64);
            if left.weight == 1 && right.weight == 1 {
                // Two single values with nothing between them.
                return (weight_so_far + 1.0) / n;
            }
            let left_excluded = if left.weight == 1 { 0.5 } else { 0.0 };
            let right_excluded = if right.weight == 1 { 0.5 } else { 0.0 };
            let dw = (wl + wr) / 2.0;
            let base = weight_so_far + wl / 2.0 + left_excluded;
            let frac = (x - left.mean) / (right.mean - left.mean);
            return (base + (dw - left_excluded - right_excluded) * frac) / n;
        }
        weight_so_far += left.weight as f64;
        i += 1;
    }
    // Unreachable: `x` is within [first mean, last mean], so some pair or mean matched.
    1.0 - 0.5 / n
}

/// `(x1·w1 + x2·w2) / (w1 + w2)`, kept within `[x1, x2]` despite rounding.
fn weighted_average(x1: f64, w1: f64, x2: f64, w2: f64) -> f64 {
    let (lo, hi) = if x1 <= x2 { (x1, x2) } else { (x2, x1) };
    ((x1 * w1 + x2 * w2) / (w1 + w2)).clamp(lo, hi)
}
