//! t-digest behaviour on small inputs (where answers are exact), merging and the byte format.

use crate::error::CoreError;
use crate::tdigest::TDigest;

fn digest_of(values: &[f64]) -> TDigest {
    let mut d = TDigest::default();
    d.add_slice(values).unwrap();
    d
}

/// `x[⌊q·n⌋]` of the sorted values, the documented exact answer for small digests.
fn order_statistic(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

#[test]
fn small_inputs_give_exact_order_statistics() {
    // 62 values is the documented bound at δ = 100; shuffled, with duplicates and negatives.
    let values: Vec<f64> = (0..62)
        .map(|i| ((i * 37) % 62) as f64 / 4.0 - 3.0)
        .collect();
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let d = digest_of(&values);
    assert!(d.centroids().iter().all(|c| c.weight == 1));
    for i in 0..=1000 {
        let q = i as f64 / 1000.0;
        assert_eq!(d.quantile(q), order_statistic(&sorted, q), "q = {q}");
    }
    for &x in &sorted {
        let below = sorted.iter().filter(|&&v| v < x).count() as f64;
        let equal = sorted.iter().filter(|&&v| v == x).count() as f64;
        assert_eq!(d.rank(x), (below + equal / 2.0) / 62.0, "x = {x}");
    }
    assert_eq!(d.rank(-100.0), 0.0);
    assert_eq!(d.rank(100.0), 1.0);
}

#[test]
fn single_and_weighted_values() {
    let mut d = TDigest::default();
    d.add(7.5).unwrap();
    assert_eq!(
        (d.quantile(0.0), d.quantile(0.5), d.quantile(1.0)),
        (7.5, 7.5, 7.5)
    );
    assert_eq!(d.rank(7.5), 0.5);
    let mut w = TDigest::default();
    w.add_weighted(2.0, 10).unwrap();
    w.add_weighted(4.0, 0).unwrap();
    assert_eq!(
        (w.count(), w.sum(), w.min(), w.max()),
        (10, 20.0, Some(2.0), Some(2.0))
    );
    assert_eq!(w.quantile(0.9), 2.0);
}

#[test]
fn empty_digest_answers_nan_and_none() {
    let d = TDigest::default();
    assert!(d.quantile(0.5).is_nan());
    assert!(d.rank(1.0).is_nan());
    assert_eq!((d.count(), d.sum(), d.min(), d.max()), (0, 0.0, None, None));
    assert!(digest_of(&[1.0]).quantile(1.5).is_nan());
}

#[test]
fn bad_arguments_are_refused() {
    let mut d = TDigest::default();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(matches!(d.add(bad), Err(CoreError::DigestArgument(_))));
    }
    assert!(matches!(
        d.add_slice(&[1.0, f64::NAN]),
        Err(CoreError::DigestArgument(_))
    ));
    assert_eq!(d.count(), 0, "a refused slice adds nothing");
    for bad in [0.0, 9.9, 10_001.0, f64::NAN] {
        assert!(matches!(
            TDigest::new(bad),
            Err(CoreError::DigestArgument(_))
        ));
    }
}

#[test]
fn merging_an_empty_digest_changes_nothing() {
    let values: Vec<f64> = (0..5000).map(|i| (i as f64).sqrt()).collect();
    let mut d = digest_of(&values);
    d.compress();
    let before = d.clone();
    d.merge(&TDigest::default());
    d.merge_all([&TDigest::default(), &TDigest::default()]);
    assert_eq!(d, before);
    assert_eq!(d.to_bytes(), before.to_bytes());
}

#[test]
fn merge_order_keeps_count_min_max_and_sum() {
    let parts: Vec<TDigest> = (0..10)
        .map(|p| {
            digest_of(
                &(0..1000)
                    .map(|i| ((i * 7919 + p * 13) % 1009) as f64 * 0.37 - 50.0)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let mut forward = TDigest::default();
    parts.iter().for_each(|p| forward.merge(p));
    let mut backward = TDigest::default();
    parts.iter().rev().for_each(|p| backward.merge(p));
    let mut all = TDigest::default();
    all.merge_all(&parts);
    for d in [&backward, &all] {
        assert_eq!(
            (d.count(), d.min(), d.max()),
            (forward.count(), forward.min(), forward.max())
        );
        // Floating-point addition is not associative: the order may change the last bits.
        assert!((d.sum() - forward.sum()).abs() <= 1e-12 * forward.sum().abs());
        assert!((d.quantile(0.5) - forward.quantile(0.5)).abs() < 1.0);
    }
}

#[test]
fn same_inputs_give_identical_bytes() {
    let values: Vec<f64> = (0..20_000u64)
        .map(|i| ((i * 104_729) % 20_011) as f64)
        .collect();
    assert_eq!(digest_of(&values).to_bytes(), digest_of(&values).to_bytes());
}

#[test]
fn round_trip_is_byte_identical() {
    let values: Vec<f64> = (0..100_000u64)
        .map(|i| ((i * 104_729) % 99_991) as f64 / 7.0)
        .collect();
    for d in [TDigest::default(), digest_of(&[3.0]), digest_of(&values)] {
        let bytes = d.to_bytes();
        assert_eq!(bytes.len(), 45 + 16 * d.centroids().len());
        let back = TDigest::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(
            (back.count(), back.sum(), back.min(), back.max()),
            (d.count(), d.sum(), d.min(), d.max())
        );
        assert_eq!(back.quantile(0.99).to_bits(), d.quantile(0.99).to_bits());
    }
}

/// A valid encoding of `[1, 2, 2, 5]` (four weight-1 centroids, so every field is known).
fn valid_bytes() -> Vec<u8> {
    digest_of(&[2.0, 1.0, 5.0, 2.0]).to_bytes()
}

fn decode_error(bytes: &[u8]) -> String {
    match TDigest::from_bytes(bytes) {
        Err(e @ CoreError::DigestDecode(_)) => e.to_string(),
        other => panic!("expected DigestDecode, got {other:?}"),
    }
}

fn with_f64(mut bytes: Vec<u8>, offset: usize, v: f64) -> Vec<u8> {
    bytes[offset..offset + 8].copy_from_slice(&v.to_le_bytes());
    bytes
}

fn with_u64(mut bytes: Vec<u8>, offset: usize, v: u64) -> Vec<u8> {
    bytes[offset..offset + 8].copy_from_slice(&v.to_le_bytes());
    bytes
}

#[test]
fn decoding_refuses_every_invalid_input() {
    let ok = valid_bytes();
    assert_eq!(ok.len(), 45 + 4 * 16);
    let centroid = |i: usize| 45 + 16 * i;
    let mut version = ok.clone();
    version[0] = 2;
    let mut trailing = ok.clone();
    trailing.push(0);
    let mut too_many = ok.clone();
    too_many[41..45].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "truncated: empty input"),
        (version, "unknown format version 2"),
        (ok[..44].to_vec(), "truncated: 44 bytes"),
        (
            ok[..ok.len() - 1].to_vec(),
            "truncated: 4 centroids need 64",
        ),
        (too_many, "truncated: 4294967295 centroids"),
        (trailing, "1 trailing bytes"),
        (with_f64(ok.clone(), 1, 5.0), "compression 5 is outside"),
        (with_f64(ok.clone(), 17, f64::NAN), "sum is NaN"),
        (with_f64(ok.clone(), 25, f64::NAN), "are not finite"),
        (
            with_f64(ok.clone(), 33, 0.0),
            "are not finite with min <= max",
        ),
        (
            with_f64(ok.clone(), centroid(1), f64::NAN),
            "centroid 1 has a non-finite mean NaN",
        ),
        (
            with_f64(ok.clone(), centroid(2), 1.5),
            "not sorted by mean: 1.5 after 2 at 2",
        ),
        (
            with_f64(ok.clone(), centroid(3), 6.0),
            "centroid 3 mean 6 is outside",
        ),
        (
            with_u64(ok.clone(), centroid(0) + 8, 0),
            "centroid 0 has weight 0",
        ),
        (
            with_u64(ok.clone(), centroid(0) + 8, 2),
            "weights add up to 5, count is 4",
        ),
        (
            with_u64(ok.clone(), 9, 3),
            "weights add up to 4, count is 3",
        ),
        (with_u64(ok.clone(), centroid(0) + 8, u64::MAX), "overflow"),
        (
            with_u64(TDigest::default().to_bytes(), 17, 1),
            "an empty digest must",
        ),
    ];
    for (bytes, expected) in cases {
        let message = decode_error(&bytes);
        assert!(message.starts_with("cannot decode t-digest: "), "{message}");
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

#[test]
fn concatenated_digests_split_back_into_each() {
    use crate::tdigest_codec::split_concatenated;
    let parts = [
        digest_of(&[1.0, 2.0]),
        TDigest::default(),
        digest_of(&[5.0; 70]),
    ]
    .map(|d| d.to_bytes());
    let joined = parts.concat();
    let split = split_concatenated(&joined).unwrap();
    assert_eq!(split, parts.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert!(split_concatenated(&[]).unwrap().is_empty());
    for cut in [1, 44, joined.len() - 1] {
        let err = split_concatenated(&joined[..cut]).unwrap_err();
        assert!(matches!(err, CoreError::DigestDecode(m) if m.starts_with("truncated")));
    }
}
