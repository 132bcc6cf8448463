//! An aggregate's digest is made only at its second value: what it stores and answers must be
//! exactly what a digest made at the first value gives, whatever the adds and merges.

use std::mem::size_of;

use crate::rollup_rows::PRECOMPUTED_QUANTILES;
use crate::tdigest::TDigest;
use crate::window_agg::{Detail, WindowAgg};

const COMPRESSION: f64 = 100.0;

/// What the aggregate's digest was before it was made lazily: one per partial, made empty,
/// every value added, the partials merged in order.
fn eager(parts: &[Vec<f64>]) -> TDigest {
    let mut digests = parts.iter().map(|values| {
        let mut d = TDigest::new(COMPRESSION).unwrap();
        values.iter().for_each(|&v| d.add(v).unwrap());
        d
    });
    let mut merged = digests.next().expect("a partial");
    digests.for_each(|d| merged.merge(&d));
    merged.compress();
    merged
}

fn lazy(parts: &[Vec<f64>]) -> WindowAgg {
    let mut aggs = parts.iter().map(|values| {
        let mut agg = WindowAgg::new(false, Detail::numbers(true, COMPRESSION));
        for (i, &v) in values.iter().enumerate() {
            agg.add_number(i as i64, v);
        }
        agg
    });
    let mut merged = aggs.next().expect("a partial");
    aggs.for_each(|agg| merged.merge(agg));
    merged
}

/// Values from a fixed linear congruential sequence, some repeated, some negative zeros.
fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            match x >> 60 {
                0 => -0.0,
                1 => 3.25,
                _ => ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.3) * 1e3,
            }
        })
        .collect()
}

fn check(parts: &[Vec<f64>], case: &str) {
    let expected = eager(parts);
    let mut agg = lazy(parts);
    let all: Vec<f64> = parts.iter().flatten().copied().collect();
    assert_eq!(agg.count, all.len() as u64, "{case}");
    assert_eq!(agg.count, expected.count(), "{case}");
    let stored = agg.row_digest().expect("a digest").to_bytes();
    assert_eq!(stored, expected.to_bytes(), "{case}");
    for q in PRECOMPUTED_QUANTILES {
        let want = (!all.is_empty()).then(|| expected.quantile(q));
        assert_eq!(agg.quantile(q), want, "{case}, q = {q}");
    }
}

#[test]
fn an_aggregate_is_104_bytes_and_its_detail_16() {
    assert_eq!(size_of::<WindowAgg>(), 104);
    assert_eq!(size_of::<Detail>(), 16);
}

#[test]
fn one_value_stores_the_digest_of_that_value() {
    for v in [0.0, -0.0, -7.5, 1e300, 42.0] {
        let parts = [vec![v]];
        check(&parts, &format!("value {v}"));
        let agg = lazy(&parts);
        assert!(matches!(agg.detail, Detail::OneValue { .. }), "{v}");
        assert_eq!(agg.quantile(0.5).unwrap().to_bits(), v.to_bits(), "{v}");
    }
}

#[test]
fn adds_and_merges_give_the_bytes_of_digests_made_at_the_first_value() {
    let sizes: [&[usize]; 12] = [
        &[2],
        &[700],
        &[1, 1],
        &[1, 0],
        &[0, 1],
        &[0, 0, 3],
        &[1, 5],
        &[5, 1],
        &[1, 1, 1, 1, 1, 1, 1, 1],
        &[1, 600, 1, 2, 1],
        &[3, 1, 0, 1, 900],
        &[60; 40],
    ];
    for (n, sizes) in sizes.iter().enumerate() {
        let parts: Vec<Vec<f64>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| values((n * 100 + i) as u64, len))
            .collect();
        check(&parts, &format!("case {n}: {sizes:?}"));
    }
}

#[test]
fn counters_have_no_digest() {
    let mut counter = WindowAgg::new(true, Detail::numbers(false, COMPRESSION));
    counter.add_number(1, 5.0);
    counter.add_number(2, 9.0);
    assert!(counter.row_digest().is_none());
    assert_eq!((counter.count, counter.min, counter.max), (2, 5.0, 9.0));
}
