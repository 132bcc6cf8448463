//! Head sampling by trace id, one ratio per service.
//!
//! The decision uses only the trace id's randomness (its rightmost 7 bytes, as W3C Trace
//! Context level 2 and OpenTelemetry's probability sampling define it), so every span of a
//! trace gets the same answer from every service sampled at the same ratio, on every request
//! and on every daemon; and lowering a ratio only ever drops traces a higher one kept.

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

/// A ratio as the exclusive bound on the randomness of the traces it keeps: a trace is kept
/// when `randomness < ratio * 2^56`. Compared as integers, because an f64 cannot hold every
/// 56-bit randomness (near 1.0, `randomness / 2^56` rounds up to 1.0 and ratio 1.0 would
/// drop it). `ratio * 2^56` is exact (a power of two), so is its ceiling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeptBelow(u64);

impl KeptBelow {
    fn of(ratio: f64) -> Self {
        KeptBelow((ratio * (1u64 << 56) as f64).ceil() as u64)
    }

    /// Whether the spans of `trace_id` are kept.
    pub fn keeps(self, trace_id: &TraceId) -> bool {
        trace_randomness(trace_id) < self.0
    }
}

/// Ratios of spans kept, by `service.name` of their resource, and the ratio of every other
/// service. Each ratio is in [0, 1]: 1.0 keeps every span, 0.0 none.
#[derive(Clone, Debug)]
pub struct SamplingRatios {
    by_service: HashMap<String, KeptBelow>,
    default: KeptBelow,
}

impl Default for SamplingRatios {
    /// Keep everything.
    fn default() -> Self {
        SamplingRatios {
            by_service: HashMap::new(),
            default: KeptBelow::of(1.0),
        }
    }
}

impl SamplingRatios {
    /// `Err` names the first ratio outside [0, 1] (NaN included).
    pub fn new(by_service: HashMap<String, f64>, default: f64) -> Result<Self, String> {
        let checked = |name: &str, ratio: f64| {
            if (0.0..=1.0).contains(&ratio) {
                Ok(KeptBelow::of(ratio))
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
    pub fn of_service(&self, service: &str) -> KeptBelow {
        self.by_service
            .get(service)
            .copied()
            .unwrap_or(self.default)
    }
}
