//! Head sampling by trace id, one ratio per service.
//!
//! The decision uses only the trace id's randomness R (its rightmost 7 bytes, as W3C Trace
//! Context level 2 defines it) and follows OpenTelemetry's consistent probability sampling
//! ("TraceState: Probability Sampling"): a trace is kept when R is at least the threshold
//! T = (1 − ratio) · 2^56. So every span of a trace gets the same answer from every service
//! sampled at the same ratio, on every request and on every daemon; lowering a ratio only
//! ever drops traces a higher one kept; and behind an OpenTelemetry consistent sampler of
//! ratio p1, a ratio p2 ≤ p1 here keeps exactly the traces it would keep alone: its threshold
//! is at least the upstream one, so every trace it keeps was kept upstream too. (An upstream
//! sampler that rounds its threshold up, to fewer hex digits of `th`, samples at a ratio a
//! little below p1; this holds against that ratio.)

use std::collections::HashMap;

use crate::trace_ingest::TraceId;

/// The randomness of a trace id: its rightmost 7 bytes as a big-endian integer, below 2^56.
pub fn trace_randomness(trace_id: &TraceId) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[1..].copy_from_slice(&trace_id[9..]);
    u64::from_be_bytes(bytes)
}

/// The sampling value of a trace id: its randomness over 2^56, in [0, 1).
pub fn sampling_value(trace_id: &TraceId) -> f64 {
    trace_randomness(trace_id) as f64 / (1u64 << 56) as f64
}

/// A ratio as OpenTelemetry's sampling threshold T, in [0, 2^56]: a trace is kept when its
/// randomness is at least T, so 0 keeps every trace and 2^56 none. T is the least integer at
/// or above `(1 − ratio) · 2^56`, that is `2^56 − ⌊ratio · 2^56⌋`, so a ratio keeps at most
/// its share of the 2^56 randomness values. Computed in integers, because an f64 cannot
/// hold every 56-bit randomness (near 1.0, `randomness / 2^56` rounds up to 1.0);
/// `ratio · 2^56` is exact (a power of two scales an f64 exactly), so is its floor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeepThreshold(u64);

impl KeepThreshold {
    fn of(ratio: f64) -> Self {
        KeepThreshold((1u64 << 56) - (ratio * (1u64 << 56) as f64).floor() as u64)
    }

    /// T: the least randomness kept (2^56 when none is).
    pub fn value(self) -> u64 {
        self.0
    }

    /// Whether the spans of `trace_id` are kept.
    pub fn keeps(self, trace_id: &TraceId) -> bool {
        trace_randomness(trace_id) >= self.0
    }
}

/// Ratios of spans kept, by `service.name` of their resource, and the ratio of every other
/// service. Each ratio is in [0, 1]: 1.0 keeps every span, 0.0 none.
#[derive(Clone, Debug)]
pub struct SamplingRatios {
    by_service: HashMap<String, KeepThreshold>,
    default: KeepThreshold,
}

impl Default for SamplingRatios {
    /// Keep everything.
    fn default() -> Self {
        SamplingRatios {
            by_service: HashMap::new(),
            default: KeepThreshold::of(1.0),
        }
    }
}

impl SamplingRatios {
    /// `Err` names the first ratio outside [0, 1] (NaN included).
    pub fn new(by_service: HashMap<String, f64>, default: f64) -> Result<Self, String> {
        let checked = |name: &str, ratio: f64| {
            if (0.0..=1.0).contains(&ratio) {
                Ok(KeepThreshold::of(ratio))
            } else {
                Err(format!(
                    "sampling ratio of {name} must be between 0 and 1, got {ratio}"
                ))
            }
        };
        let default = checked("the default", default)?;
        let by_service = by_service
            .into_iter()
            .map(|(service, ratio)| Ok((service.clone(), checked(&format!("{service:?}"), ratio)?)))
            .collect::<Result<_, String>>()?;
        Ok(SamplingRatios {
            by_service,
            default,
        })
    }

    /// What decides for the spans `service` sends (looked up once per resource).
    pub fn of_service(&self, service: &str) -> KeepThreshold {
        self.by_service
            .get(service)
            .copied()
            .unwrap_or(self.default)
    }
}
