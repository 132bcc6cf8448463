//! Sampling thresholds: a trace is kept when its id's randomness R (the rightmost 7 bytes) is
//! at least T = (1 − ratio) · 2^56, as OpenTelemetry's consistent probability sampling keeps
//! it. What the trace core does with the decision is in `test_trace_tenants`.

use super::random_requests::Rng;
use super::test_trace_tenants::{ratios, trace_id};
use crate::trace_ingest::TraceId;
use crate::trace_sampling::{sampling_value, trace_randomness, KeepThreshold, SamplingRatios};

#[test]
fn sampling_values_are_the_rightmost_seven_bytes_over_two_to_the_56() {
    assert_eq!(trace_randomness(&trace_id(0)), 0);
    assert_eq!(sampling_value(&trace_id(0x80 << 48)), 0.5);
    assert_eq!(sampling_value(&trace_id(0x40 << 48)), 0.25);
    let mut id = [0u8; 16];
    id[9..].copy_from_slice(&[0xff; 7]);
    id[0] = 1;
    assert_eq!(trace_randomness(&id), (1 << 56) - 1);
}

fn threshold(ratio: f64) -> KeepThreshold {
    ratios(&[], ratio).of_service("any")
}

#[test]
fn the_threshold_is_one_minus_the_ratio_times_two_to_the_56_rounded_up() {
    let all = 1u64 << 56;
    for (ratio, expected) in [
        (1.0, 0),
        (0.75, 1 << 54),
        (0.5, 1 << 55),
        (0.25, 3 << 54),
        (0.0, all),
        // 0.1 is 7205759403792794 / 2^56 exactly as an f64.
        (0.1, all - 7_205_759_403_792_794),
        // The largest f64 below 1 keeps all but the 8 lowest values.
        (1.0 - f64::EPSILON / 2.0, 8),
        // One value in 2^56 keeps only the largest randomness; less than one keeps none.
        (1.0 / all as f64, all - 1),
        (1.5 / all as f64, all - 1),
        (0.5 / all as f64, all),
        (f64::MIN_POSITIVE, all),
    ] {
        assert_eq!(threshold(ratio).value(), expected, "ratio {ratio}");
    }
}

/// An OpenTelemetry `th` value (1 to 14 hex digits, trailing zeros dropped) as a threshold.
fn th(hex: &str) -> u64 {
    u64::from_str_radix(&format!("{hex:0<14}"), 16).unwrap()
}

#[test]
fn thresholds_match_the_ones_opentelemetry_encodes_in_th() {
    // th:0 samples all, th:8 a half, th:c a quarter, th:4 three quarters, th:f a sixteenth.
    for (ratio, encoded) in [
        (1.0, "0"),
        (0.5, "8"),
        (0.25, "c"),
        (0.75, "4"),
        (0.0625, "f"),
    ] {
        assert_eq!(threshold(ratio).value(), th(encoded), "ratio {ratio}");
    }
}

/// Randomness of eight traces: 0, a quarter, a half and three quarters of 2^56 with the
/// value one below each of the last three, and the largest. Each threshold of the ratios
/// 0.75, 0.5 and 0.25 is one of them, and the value below it is the largest it drops.
pub(super) const EIGHT: [u64; 8] = [
    0,
    (1 << 54) - 1,
    1 << 54,
    (1 << 55) - 1,
    1 << 55,
    (3 << 54) - 1,
    3 << 54,
    (1 << 56) - 1,
];

#[test]
fn a_trace_is_kept_from_the_threshold_up_and_dropped_one_below_it() {
    for (ratio, kept) in [
        (
            0.0,
            [false, false, false, false, false, false, false, false],
        ),
        (0.25, [false, false, false, false, false, false, true, true]),
        (0.5, [false, false, false, false, true, true, true, true]),
        (0.75, [false, false, true, true, true, true, true, true]),
        (1.0, [true, true, true, true, true, true, true, true]),
    ] {
        let decided = EIGHT.map(|r| threshold(ratio).keeps(&trace_id(r)));
        assert_eq!(decided, kept, "ratio {ratio}");
    }
}

fn random_trace_ids(n: usize) -> Vec<TraceId> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&rng.next().to_be_bytes());
            id[8..].copy_from_slice(&rng.next().to_be_bytes());
            id[0] |= 1;
            id
        })
        .collect()
}

#[test]
fn a_trace_kept_at_a_ratio_is_kept_at_every_higher_ratio() {
    let ids = random_trace_ids(2_000);
    // Ratios in thousandths.
    let steps = [0u128, 1, 100, 250, 500, 600, 999, 1_000];
    let mut previous: Vec<bool> = vec![false; ids.len()];
    for thousandths in steps {
        let ratio = thousandths as f64 / 1_000.0;
        let kept: Vec<bool> = ids.iter().map(|id| threshold(ratio).keeps(id)).collect();
        for (before, now) in previous.iter().zip(&kept) {
            assert!(!before | now, "kept at a lower ratio, dropped at {ratio}");
        }
        let expected = ids
            .iter()
            // randomness ≥ (1 − ratio) · 2^56, in integers (no random id is within the few
            // units by which the f64 ratio differs from the exact fraction).
            .filter(|id| u128::from(trace_randomness(id)) * 1_000 >= (1_000 - thousandths) << 56)
            .count();
        assert_eq!(kept.iter().filter(|k| **k).count(), expected, "{ratio}");
        previous = kept;
    }
    assert!(previous.iter().all(|k| *k), "1.0 keeps every trace");
}

#[test]
fn behind_an_opentelemetry_sampler_a_lower_ratio_keeps_what_it_keeps_alone() {
    let mut ids = random_trace_ids(2_000);
    ids.extend(EIGHT.map(trace_id));
    // Upstream: a consistent sampler with threshold `th`, keeping randomness ≥ th.
    for (upstream, p1) in [("0", 1.0), ("4", 0.75), ("8", 0.5), ("c", 0.25)] {
        for p2 in [0.0, 0.1, 0.25, 0.3, 0.5, 0.6, 0.75, 1.0]
            .into_iter()
            .filter(|&p2| p2 <= p1)
        {
            let both: Vec<bool> = ids
                .iter()
                .map(|id| trace_randomness(id) >= th(upstream) && threshold(p2).keeps(id))
                .collect();
            let alone: Vec<bool> = ids.iter().map(|id| threshold(p2).keeps(id)).collect();
            assert_eq!(both, alone, "upstream th:{upstream}, then {p2}");
        }
    }
}

#[test]
fn ratios_outside_zero_to_one_are_refused_with_their_name() {
    for (by_service, default, named) in [
        (vec![("api", 1.5)], 1.0, "\"api\""),
        (vec![("api", -0.1)], 1.0, "\"api\""),
        (vec![("api", f64::NAN)], 1.0, "\"api\""),
        (vec![], 2.0, "the default"),
    ] {
        let map = by_service
            .into_iter()
            .map(|(s, r)| (s.to_owned(), r))
            .collect();
        let err = SamplingRatios::new(map, default).unwrap_err();
        assert!(err.contains(named), "{err}");
    }
}
