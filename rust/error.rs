//! The one error type of the core (`python.rs` maps it to Python exceptions) and the decode
//! errors it wraps.

use std::fmt;

/// Everything that makes a whole call fail (per-point problems are rejections, not errors).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request bytes are not a decodable `ExportMetricsServiceRequest` (truncated, wrong wire
    /// type, invalid UTF-8 in a string field, nesting past prost's recursion limit of 100...).
    /// Nothing of the request was accepted; upstream this is INVALID_ARGUMENT.
    #[error("cannot decode ExportMetricsServiceRequest: {}", Shortened(.0))]
    Decode(#[from] DecodeError),
    /// Bytes are not a valid serialized t-digest (see `tdigest_codec` for the format and every
    /// check); nothing was read.
    #[error("cannot decode t-digest: {0}")]
    DigestDecode(String),
    /// A t-digest was given an argument it cannot use (a non-finite value, a compression out
    /// of range).
    #[error("{0}")]
    DigestArgument(String),
    /// The request bytes are not a decodable `ExportTraceServiceRequest`; nothing of it was
    /// accepted (INVALID_ARGUMENT upstream).
    #[error("cannot decode ExportTraceServiceRequest: {}", Shortened(.0))]
    TraceDecode(String),
    /// A stored trace frame does not decompress or decode; the caller names the block.
    #[error("corrupt trace frame: {0}")]
    FrameDecode(String),
}

/// prost's message (on the rare inputs it decodes) lists every enclosing field: a 100-deep
/// input gives kilobytes of path. Keeps the head and the tail (where the reason is), so the
/// message stays readable in logs and in the gRPC status.
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

/// Why bytes are not a valid protobuf message (the descriptions are prost's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    InvalidVarint,
    InvalidKey,
    InvalidWireType,
    InvalidTag,
    /// A known field with another wire type than its declared one.
    UnexpectedWireType,
    BufferUnderflow,
    UnexpectedEndGroup,
    InvalidString,
    RecursionLimit,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::InvalidVarint => "invalid varint",
            WireError::InvalidKey => "invalid key value",
            WireError::InvalidWireType => "invalid wire type value",
            WireError::InvalidTag => "invalid tag value: 0",
            WireError::UnexpectedWireType => "invalid wire type for a known field",
            WireError::BufferUnderflow => "buffer underflow",
            WireError::UnexpectedEndGroup => "unexpected end group tag",
            WireError::InvalidString => "invalid string value: data is not UTF-8 encoded",
            WireError::RecursionLimit => "recursion limit reached",
        })
    }
}

/// A decode failure of a whole request: from the borrowed decoder, or from prost on the rare
/// inputs that go through it (see `otlp_decode::decode_request`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Wire(WireError),
    Prost(prost::DecodeError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Wire(e) => write!(f, "failed to decode Protobuf message: {e}"),
            DecodeError::Prost(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError::Wire(e)
    }
}

impl From<prost::DecodeError> for DecodeError {
    fn from(e: prost::DecodeError) -> Self {
        DecodeError::Prost(e)
    }
}
