//! The one error type of the core; `python.rs` maps it to Python exceptions.

use std::fmt;

/// Everything that makes a whole call fail (per-point problems are rejections, not errors).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request bytes are not a decodable `ExportMetricsServiceRequest` (truncated, wrong wire
    /// type, invalid UTF-8 in a string field, nesting past prost's recursion limit of 100...).
    /// Nothing of the request was accepted; upstream this is INVALID_ARGUMENT.
    #[error("cannot decode ExportMetricsServiceRequest: {}", Shortened(.0))]
    Decode(#[from] prost::DecodeError),
}

/// prost's message lists every enclosing field: a 100-deep input gives kilobytes of path.
/// Keeps the head and the tail (where the reason is), so the message stays readable in logs
/// and in the gRPC status.
struct Shortened<'a, T: fmt::Display>(&'a T);

const KEEP: usize = 200;

impl<T: fmt::Display> fmt::Display for Shortened<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.0.to_string();
        if full.len() <= 2 * KEEP + 5 {
            return f.write_str(&full);
        }
        let head = (0..=KEEP)
            .rev()
            .find(|&i| full.is_char_boundary(i))
            .unwrap_or(0);
        let tail = (full.len() - KEEP..full.len()).find(|&i| full.is_char_boundary(i));
        let tail = tail.unwrap_or(full.len());
        write!(f, "{} ... {}", &full[..head], &full[tail..])
    }
}
