//! Reading traces back: stored frames → one `TracesData`, and its OTLP JSON.

use std::collections::HashSet;

use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;

use crate::error::CoreError;

/// Frames never decompress to more than this (a frame holds one trace's spans of one block,
/// and blocks are cut at a few MiB): a corrupt length field cannot make us allocate more.
const MAX_FRAME_BYTES: usize = 256 << 20;

/// A block's dictionary is up to `dictionary_bytes` of its traces, at most 16 MiB
/// (`TraceSettings`); a corrupt one cannot make us allocate more than this.
const MAX_DICTIONARY_BYTES: usize = 64 << 20;

/// Decompresses frames (each one trace's spans in one block, with the zstd-compressed
/// dictionary of its block, empty when it has none) and concatenates them: the result is one
/// encoded `TracesData` holding every span. `Err` names the frame's position.
pub fn join_frames(frames: &[(&[u8], &[u8])]) -> Result<Vec<u8>, CoreError> {
    let mut out = Vec::new();
    for (i, (frame, dictionary)) in frames.iter().enumerate() {
        let fail = |what: &str, e: std::io::Error| {
            CoreError::FrameDecode(format!("frame {i}: {what}: {e}"))
        };
        let dictionary = if dictionary.is_empty() {
            Vec::new()
        } else {
            zstd::bulk::decompress(dictionary, MAX_DICTIONARY_BYTES)
                .map_err(|e| fail("its block's dictionary", e))?
        };
        let bytes = zstd::bulk::Decompressor::with_dictionary(&dictionary)
            .and_then(|mut d| d.decompress(frame, MAX_FRAME_BYTES))
            .map_err(|e| fail("the frame", e))?;
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Decodes a joined `TracesData`, dropping repeats of a span (same span id sent twice, as
/// a retrying exporter may), so readers see every span once.
pub fn decode_trace(bytes: &[u8]) -> Result<TracesData, CoreError> {
    let mut data = TracesData::decode(bytes)
        .map_err(|e| CoreError::FrameDecode(format!("not a TracesData: {e}")))?;
    let mut seen = HashSet::new();
    for rs in &mut data.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| seen.insert(s.span_id.clone()));
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    data.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    Ok(data)
}

/// OTLP JSON of a trace: `{"resourceSpans": [...]}`, or with `tempo` the shape of Grafana
/// Tempo's trace-by-id answer, `{"batches": [...]}` (the same resource spans).
pub fn trace_json(data: &TracesData, tempo: bool) -> String {
    let key = if tempo { "batches" } else { "resourceSpans" };
    let spans = serde_json::to_value(&data.resource_spans).unwrap_or_default();
    serde_json::json!({ key: spans }).to_string()
}

/// The encoded `TracesData` (what Tempo's API answers to `Accept: application/protobuf`).
pub fn trace_protobuf(data: &TracesData) -> Vec<u8> {
    data.encode_to_vec()
}
