//! An aggregate's digest is made only at its second value: what it stores and answers must be
//! exactly what a digest made at the first value gives, through the daemon's whole flow:
//! windows written (which compresses their digests in place), then merged into their hour,
//! rows written partway and more values added after.

use std::mem::size_of;

use crate::rollup_rows::PRECOMPUTED_QUANTILES;
use crate::tdigest::TDigest;
use crate::window_agg::{Detail, WindowAgg};

/// One partial: its values, and whether a row was written from it before it is merged.
struct Part {
    values: Vec<f64>,
    written: bool,
}

/// The digest as it was made before: at the first value, compressed in place when a row was
/// written, partials merged in order.
fn eager(parts: &[Part], compression: f64) -> TDigest {
    let mut digests = parts.iter().map(|part| {
        let mut d = TDigest::new(compression).unwrap();
        part.values.iter().for_each(|&v| d.add(v).unwrap());
        if part.written {
            d.compress();
        }
        d
    });
    let mut merged = digests.next().expect("a partial");
    digests.for_each(|d| merged.merge(&d));
    merged
}

fn lazy(parts: &[Part], compression: f64) -> WindowAgg {
    let mut aggs = parts.iter().map(|part| {
        let mut agg = WindowAgg::new(false, Detail::numbers(true, compression));
        for (i, &v) in part.values.iter().enumerate() {
            agg.add_number(i as i64, v);
        }
        if part.written {
            agg.row_digest();
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

/// Row digest bytes and quantiles (bit for bit) of `agg` against `expected`.
fn check_row(agg: &mut WindowAgg, mut expected: TDigest, case: &str) {
    assert_eq!(agg.count, expected.count(), "{case}");
    expected.compress();
    let stored = agg.row_digest().expect("a digest").to_bytes();
    assert_eq!(stored, expected.to_bytes(), "{case}");
    for q in PRECOMPUTED_QUANTILES.into_iter().chain([0.0, 1.0, 1.5]) {
        let want = (expected.count() > 0).then(|| expected.quantile(q).to_bits());
        assert_eq!(agg.quantile(q).map(f64::to_bits), want, "{case}, q = {q}");
    }
}

fn check(parts: &[Part], compression: f64, case: &str) {
    let expected = eager(parts, compression);
    let mut agg = lazy(parts, compression);
    let n: usize = parts.iter().map(|p| p.values.len()).sum();
    assert_eq!(agg.count, n as u64, "{case}");
    check_row(&mut agg, expected, case);
}

#[test]
fn an_aggregate_is_104_bytes_and_its_detail_16() {
    assert_eq!(size_of::<WindowAgg>(), 104);
    assert_eq!(size_of::<Detail>(), 16);
}

#[test]
fn one_value_stores_the_digest_of_that_value() {
    for v in [0.0, -0.0, -7.5, 1e300, 42.0] {
        let parts = [Part {
            values: vec![v],
            written: false,
        }];
        check(&parts, 100.0, &format!("value {v}"));
        let agg = lazy(&parts, 100.0);
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
    for compression in [10.0, 100.0] {
        for written in [false, true] {
            for (n, sizes) in sizes.iter().enumerate() {
                let parts: Vec<Part> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &len)| Part {
                        values: values((n * 100 + i) as u64, len),
                        written,
                    })
                    .collect();
                let case = format!("δ {compression}, written {written}, case {n}: {sizes:?}");
                check(&parts, compression, &case);
            }
        }
    }
}

/// At δ = 10 a merge compresses once 1,000 entries are buffered: an hour of one-value windows
/// reaches that, and a written window must hold its value where the old digest did.
#[test]
fn an_hour_of_written_one_value_windows_compresses_when_it_did() {
    for (windows, first_len) in [(1_100, 1), (1_100, 2), (3_600, 1), (999, 1), (1_001, 1)] {
        let parts: Vec<Part> = (0..windows)
            .map(|i| Part {
                values: values(i as u64 + 7, if i == 0 { first_len } else { 1 }),
                written: true,
            })
            .collect();
        check(
            &parts,
            10.0,
            &format!("{windows} windows, first of {first_len}"),
        );
    }
}

#[test]
fn values_added_after_a_row_was_written() {
    for (before, after) in [(1, 1), (1, 60), (1, 49), (1, 50), (2, 48), (0, 3)] {
        let (first, then) = (values(before as u64, before), values(99, after));
        let mut agg = WindowAgg::new(false, Detail::numbers(true, 10.0));
        let mut expected = TDigest::new(10.0).unwrap();
        for &v in &first {
            agg.add_number(0, v);
            expected.add(v).unwrap();
        }
        agg.row_digest();
        expected.compress();
        for &v in &then {
            agg.add_number(1, v);
            expected.add(v).unwrap();
        }
        check_row(&mut agg, expected, &format!("{before} then {after}"));
    }
}

#[test]
fn counters_have_no_digest() {
    let mut counter = WindowAgg::new(true, Detail::numbers(false, 100.0));
    counter.add_number(1, 5.0);
    counter.add_number(2, 9.0);
    assert!(counter.row_digest().is_none());
    assert_eq!((counter.count, counter.min, counter.max), (2, 5.0, 9.0));
}
