//! t-digest accuracy on 1 M values of five distributions, split into 60 windows whose digests
//! are serialized, read back and merged, as rollups will be. `--nocapture` prints the errors.
//!
//! Rank error of an estimate `e` for `q`: 0 when `q` lies within `[#{v < e}/n, #{v ≤ e}/n]`
//! (the ranks the exact data give `e`), else the distance to that interval.

use crate::tdigest::TDigest;

const N: usize = 1_000_000;
const WINDOWS: usize = 60;
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
/// Required at p50, p90, p99, p999.
const MAX_ERROR: [f64; 4] = [0.005, 0.005, 0.001, 0.001];

/// SplitMix64: small, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1), never 0 (so `ln` is finite).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller; one of the pair is enough here).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn distributions() -> Vec<(&'static str, Vec<f64>)> {
    let mut rng = Rng(0x7469_6465_6761_7465);
    let mut make = |f: &dyn Fn(&mut Rng) -> f64| (0..N).map(|_| f(&mut rng)).collect::<Vec<_>>();
    vec![
        ("uniform", make(&|r| r.uniform() * 1000.0)),
        ("normal", make(&|r| 50.0 + 10.0 * r.normal())),
        ("lognormal", make(&|r| (1.0 + 1.5 * r.normal()).exp())),
        ("exponential", make(&|r| -r.uniform().ln() * 20.0)),
        // 70 % around 10, 30 % around 100: the median sits in the first mode's upper tail.
        (
            "bimodal",
            make(&|r| {
                if r.uniform() < 0.7 {
                    10.0 + 2.0 * r.normal()
                } else {
                    100.0 + 15.0 * r.normal()
                }
            }),
        ),
    ]
}

fn rank_error(sorted: &[f64], estimate: f64, q: f64) -> f64 {
    let n = sorted.len() as f64;
    let below = sorted.partition_point(|&v| v < estimate) as f64 / n;
    let at_or_below = sorted.partition_point(|&v| v <= estimate) as f64 / n;
    (below - q).max(q - at_or_below).max(0.0)
}

/// The 60 window digests, each through `to_bytes` / `from_bytes`.
fn window_digests(values: &[f64]) -> Vec<TDigest> {
    values
        .chunks(values.len().div_ceil(WINDOWS))
        .map(|window| {
            let mut d = TDigest::default();
            d.add_slice(window).unwrap();
            let bytes = d.to_bytes();
            let back = TDigest::from_bytes(&bytes).unwrap();
            assert_eq!(back.to_bytes(), bytes);
            back
        })
        .collect()
}

#[test]
fn merged_windows_meet_the_rank_error_bounds() {
    let mut failures = Vec::new();
    println!("rank error after 60 windows merged (δ = 100, {N} values each)");
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "data", "p50", "p90", "p99", "p999", "centroids"
    );
    for (name, values) in distributions() {
        let windows = window_digests(&values);
        assert_eq!(windows.len(), WINDOWS);
        let mut merged = TDigest::default();
        merged.merge_all(&windows);
        let mut one_by_one = TDigest::default();
        windows.iter().for_each(|w| one_by_one.merge(w));
        assert_eq!(
            one_by_one.to_bytes(),
            merged.to_bytes(),
            "{name}: merges are buffered"
        );

        // Exact figures computed the same way: per window, then across windows.
        let exact_sum: f64 = windows.iter().map(|w| w.sum()).sum();
        let direct_sum: f64 = values.iter().sum();
        assert_eq!(merged.count(), N as u64);
        assert_eq!(
            merged.sum(),
            exact_sum,
            "{name}: same addition order, same sum"
        );
        // Another addition order differs only by rounding.
        assert!(
            (merged.sum() - direct_sum).abs() <= 1e-12 * direct_sum.abs(),
            "{name}"
        );
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(merged.min(), Some(sorted[0]), "{name}");
        assert_eq!(merged.max(), Some(sorted[N - 1]), "{name}");

        let errors: Vec<f64> = QUANTILES
            .iter()
            .map(|&q| rank_error(&sorted, merged.quantile(q), q))
            .collect();
        println!(
            "{:<12} {:>9.6} {:>9.6} {:>9.6} {:>9.6} {:>10}",
            name,
            errors[0],
            errors[1],
            errors[2],
            errors[3],
            merged.centroids().len()
        );
        for ((q, error), max) in QUANTILES.iter().zip(&errors).zip(MAX_ERROR) {
            if *error > max {
                failures.push(format!("{name} q={q}: rank error {error} > {max}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
