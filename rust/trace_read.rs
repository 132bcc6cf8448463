//! Reading traces back: stored frames → one `TracesData`, and its OTLP JSON.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use xxhash_rust::xxh3::xxh3_128;
use zstd::dict::DecoderDictionary;

use crate::error::CoreError;

/// Frames never decompress to more than this (a frame holds one trace's spans of one block,
/// and blocks are cut at a few MiB): a corrupt length field cannot make us allocate more.
const MAX_FRAME_BYTES: usize = 256 << 20;

/// A block's dictionary is up to `dictionary_bytes` of its traces, at most 16 MiB
/// (`TraceSettings`); a corrupt one cannot make us allocate more than this.
const MAX_DICTIONARY_BYTES: usize = 64 << 20;

/// Decompressed bytes of the block dictionaries kept ready for reading (a 256 KiB dictionary
/// takes longer to decompress than a trace's frame).
const DICTIONARY_CACHE_BYTES: usize = 8 << 20;

/// A block dictionary ready for decompressing frames: its raw size, for the cache's bound.
type Prepared = (Arc<DecoderDictionary<'static>>, usize);

/// Dictionaries of recently read blocks, most recent last, by the xxh3-128 of their
/// compressed bytes: the traces a search returns, or the fragments of one trace, often share
/// a block.
static DICTIONARIES: Mutex<Vec<(u128, Prepared)>> = Mutex::new(Vec::new());

/// The prepared dictionary of a block from its zstd-compressed bytes, from the cache when a
/// recent read had it.
fn prepared_dictionary(compressed: &[u8]) -> std::io::Result<Arc<DecoderDictionary<'static>>> {
    let key = xxh3_128(compressed);
    let cached = || DICTIONARIES.lock().unwrap_or_else(PoisonError::into_inner);
    {
        let mut cache = cached();
        if let Some(at) = cache.iter().position(|(k, _)| *k == key) {
            let entry = cache.remove(at);
            let dictionary = Arc::clone(&entry.1 .0);
            cache.push(entry);
            return Ok(dictionary);
        }
    }
    let raw = zstd::bulk::decompress(compressed, MAX_DICTIONARY_BYTES)?;
    let dictionary = Arc::new(DecoderDictionary::copy(&raw));
    if raw.len() <= DICTIONARY_CACHE_BYTES {
        let mut cache = cached();
        cache.push((key, (Arc::clone(&dictionary), raw.len())));
        let mut held: usize = cache.iter().map(|(_, (_, size))| size).sum();
        while held > DICTIONARY_CACHE_BYTES {
            held -= cache.remove(0).1 .1;
        }
    }
    Ok(dictionary)
}

/// Decompresses frames (each one trace's spans in one block, with the zstd-compressed
/// dictionary of its block, empty when it has none) and concatenates them: the result is one
/// encoded `TracesData` holding every span. `Err` names the frame's position.
pub fn join_frames(frames: &[(&[u8], &[u8])]) -> Result<Vec<u8>, CoreError> {
    let mut out = Vec::new();
    for (i, (frame, dictionary)) in frames.iter().enumerate() {
        let fail = |what: &str, e: std::io::Error| {
            CoreError::FrameDecode(format!("frame {i}: {what}: {e}"))
        };
        let bytes = if dictionary.is_empty() {
            zstd::bulk::Decompressor::new().and_then(|mut d| d.decompress(frame, MAX_FRAME_BYTES))
        } else {
            let prepared =
                prepared_dictionary(dictionary).map_err(|e| fail("its block's dictionary", e))?;
            zstd::bulk::Decompressor::with_prepared_dictionary(&prepared)
                .and_then(|mut d| d.decompress(frame, MAX_FRAME_BYTES))
        }
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
