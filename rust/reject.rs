//! Rejection reasons, their per-request tally, the client-facing message and the OTLP response.

use std::borrow::Cow;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use prost::Message;

/// Why a data point was not stored. The snake_case names are stable: they become metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    MissingTimestamp,
    TimestampTooOld,
    TimestampInFuture,
    NonFiniteValue,
    MissingValue,
    NoRecordedValue,
    UnspecifiedTemporality,
    TooManyAttributes,
    AttributeValueTooLong,
    AttributeTooDeep,
    NulInAttribute,
    DuplicateAttributeKey,
    InvalidName,
    InvalidHistogram,
    InvalidExponentialHistogram,
    InvalidSummary,
    SeriesIdCollision,
    /// The point's series is not active and its tenant is at its active-series limit.
    SeriesLimit,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 18] = [
        Reason::MissingTimestamp,
        Reason::TimestampTooOld,
        Reason::TimestampInFuture,
        Reason::NonFiniteValue,
        Reason::MissingValue,
        Reason::NoRecordedValue,
        Reason::UnspecifiedTemporality,
        Reason::TooManyAttributes,
        Reason::AttributeValueTooLong,
        Reason::AttributeTooDeep,
        Reason::NulInAttribute,
        Reason::DuplicateAttributeKey,
        Reason::InvalidName,
        Reason::InvalidHistogram,
        Reason::InvalidExponentialHistogram,
        Reason::InvalidSummary,
        Reason::SeriesIdCollision,
        Reason::SeriesLimit,
    ];

    /// The stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingTimestamp => "missing_timestamp",
            Reason::TimestampTooOld => "timestamp_too_old",
            Reason::TimestampInFuture => "timestamp_in_future",
            Reason::NonFiniteValue => "non_finite_value",
            Reason::MissingValue => "missing_value",
            Reason::NoRecordedValue => "no_recorded_value",
            Reason::UnspecifiedTemporality => "unspecified_temporality",
            Reason::TooManyAttributes => "too_many_attributes",
            Reason::AttributeValueTooLong => "attribute_value_too_long",
            Reason::AttributeTooDeep => "attribute_too_deep",
            Reason::NulInAttribute => "nul_in_attribute",
            Reason::DuplicateAttributeKey => "duplicate_attribute_key",
            Reason::InvalidName => "invalid_name",
            Reason::InvalidHistogram => "invalid_histogram",
            Reason::InvalidExponentialHistogram => "invalid_exponential_histogram",
            Reason::InvalidSummary => "invalid_summary",
            Reason::SeriesIdCollision => "series_id_collision",
            Reason::SeriesLimit => "series_limit",
        }
    }
}

/// A reason plus a short static detail for the client message (e.g. "value is NaN").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    pub reason: Reason,
    pub detail: &'static str,
}

impl Reject {
    /// A rejection with a detail ("" for none).
    pub fn new(reason: Reason, detail: &'static str) -> Self {
        Reject { reason, detail }
    }
}

/// The first rejected point of one reason: enough to tell the client where to look.
#[derive(Clone, Debug)]
struct Example {
    metric: String,
    detail: Cow<'static, str>,
}

/// Per-request rejection counts, with the first example of each reason.
#[derive(Clone, Debug, Default)]
pub struct Rejections {
    counts: [u64; Reason::ALL.len()],
    examples: [Option<Example>; Reason::ALL.len()],
}

/// Metric names in the message are cut to this many characters.
const MAX_EXAMPLE_CHARS: usize = 100;
/// The message stays below about this many bytes (OTLP clients log it verbatim).
const MAX_MESSAGE_BYTES: usize = 1024;

impl Rejections {
    /// Counts `points` rejected points of one reason; the first call per reason keeps `metric`
    /// as the example (only then is the name copied).
    pub fn add(&mut self, reject: Reject, points: u64, metric: &str) {
        self.add_example(reject.reason, points, metric, || {
            Cow::Borrowed(reject.detail)
        });
    }

    /// [`add`](Self::add) with a detail made for this request (it names a tenant, a limit).
    pub fn add_detailed(&mut self, reason: Reason, points: u64, metric: &str, detail: String) {
        self.add_example(reason, points, metric, || Cow::Owned(detail));
    }

    fn add_example(
        &mut self,
        reason: Reason,
        points: u64,
        metric: &str,
        detail: impl FnOnce() -> Cow<'static, str>,
    ) {
        let i = reason as usize;
        self.counts[i] += points;
        if self.examples[i].is_none() {
            let metric = metric.chars().take(MAX_EXAMPLE_CHARS).collect();
            self.examples[i] = Some(Example {
                metric,
                detail: detail(),
            });
        }
    }

    /// Total rejected points.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Count of one reason.
    pub fn count(&self, reason: Reason) -> u64 {
        self.counts[reason as usize]
    }

    /// The non-zero counts, by label.
    pub fn by_reason(&self) -> Vec<(&'static str, u64)> {
        Reason::ALL
            .iter()
            .filter(|r| self.counts[**r as usize] > 0)
            .map(|r| (r.as_str(), self.counts[*r as usize]))
            .collect()
    }

    /// `rejected 3 of 10 data points: 2 non_finite_value (metric "cpu": value is NaN), ...`;
    /// empty when nothing was rejected. Reasons with the most points come first.
    pub fn message(&self, total_points: u64) -> String {
        let rejected = self.total();
        if rejected == 0 {
            return String::new();
        }
        let mut reasons: Vec<Reason> = Reason::ALL
            .into_iter()
            .filter(|r| self.counts[*r as usize] > 0)
            .collect();
        reasons.sort_by_key(|r| std::cmp::Reverse(self.counts[*r as usize]));
        let mut msg = format!("rejected {rejected} of {total_points} data points: ");
        for (n, reason) in reasons.iter().enumerate() {
            let mut part = format!("{} {}", self.counts[*reason as usize], reason.as_str());
            if let Some(ex) = &self.examples[*reason as usize] {
                // serde_json gives the quoted, escaped form of the name (NUL, quotes, control).
                let name = serde_json::to_string(&ex.metric).unwrap_or_default();
                if ex.detail.is_empty() {
                    part.push_str(&format!(" (metric {name})"));
                } else {
                    part.push_str(&format!(" (metric {name}: {})", ex.detail));
                }
            }
            if n > 0 {
                msg.push_str(", ");
            }
            if msg.len() + part.len() > MAX_MESSAGE_BYTES {
                msg.push_str(&format!("and {} more reasons", reasons.len() - n));
                break;
            }
            msg.push_str(&part);
        }
        msg
    }
}

/// The serialized `ExportMetricsServiceResponse`: `partial_success` only when something was
/// rejected, otherwise the empty message (zero bytes).
pub fn encode_response(rejected: u64, error_message: &str) -> Vec<u8> {
    let partial_success = (rejected > 0).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: error_message.to_owned(),
    });
    ExportMetricsServiceResponse { partial_success }.encode_to_vec()
}
