//! Phase one of a trace Export: decode the request, check every span, and regroup the spans
//! by trace id into one encoded `TracesData` fragment per trace (with copies of the resource
//! and scopes they came under), plus what the index needs to know of them.
//!
//! Each span is written with its fields in another order than the client's (see
//! `write_span`): the same message, and frames about an eighth smaller.
//!
//! Fragments of one trace are concatenated as they arrive: concatenating encoded messages of
//! one type is merging them, and `resource_spans` is repeated, so the concatenation is itself
//! a valid `TracesData` holding every span.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use opentelemetry_proto::tonic::trace::v1::status;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

use crate::error::CoreError;
use crate::otlp_spans::{decode_spans, ResourceSpansView, ScopeSpansView, SpanView};
use crate::otlp_view::{AnyView, KeyValueView};
use crate::trace_sampling::SamplingRatios;
use crate::wire::{Reader, RECURSION_LIMIT};

/// A trace id: 16 bytes, not all zero.
pub type TraceId = [u8; 16];

/// Attribute pairs kept per trace and block for search, as 32-bit hashes of `key=value`
/// (see [`attribute_hash`]): enough to find a trace by its route, status code, user or
/// tenant. Hashes, not text: a row stays small and its GIN entries few, which is most of what
/// indexing costs per span.
const MAX_SEARCH_ATTRIBUTES: usize = 16;
const MAX_SEARCH_VALUE_BYTES: usize = 256;

/// The search hash of a `key=value` attribute pair: the low 32 bits of the xxh3-64 of its
/// UTF-8 bytes, as i32. Four bytes, not eight: an index row's array and its GIN entries are
/// half the size; a false match costs one more row in a search result, and is rare (16
/// hashes per row: about one row in 2^28).
pub fn attribute_hash(pair: &str) -> i32 {
    xxhash_rust::xxh3::xxh3_64(pair.as_bytes()) as i32
}

/// OTLP `Status.code` values, as stored in the index.
pub const STATUS_UNSET: i16 = 0;
pub const STATUS_OK: i16 = 1;
pub const STATUS_ERROR: i16 = 2;

/// What the index records of the spans of one trace that share a block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceSummary {
    pub spans: u32,
    /// Size of the spans alone as the client encoded them (without the resource and scope
    /// copies every fragment carries): blocks are cut on it, so that how many blocks a span volume makes does not
    /// depend on how many traces it is split into.
    pub span_bytes: usize,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Name and service of the root span (no parent), when it is among these spans.
    pub root_name: Option<String>,
    pub root_service: Option<String>,
    /// The service of the first span seen, when the root is elsewhere.
    pub first_service: String,
    /// Worst status: error over ok over unset.
    pub status: i16,
    /// [`attribute_hash`]es of span attributes, at most `MAX_SEARCH_ATTRIBUTES`.
    pub attributes: BTreeSet<i32>,
}

impl TraceSummary {
    /// Folds another summary of the same trace into this one.
    pub fn absorb(&mut self, other: TraceSummary) {
        if self.spans == 0 {
            *self = other;
            return;
        }
        self.spans += other.spans;
        self.span_bytes += other.span_bytes;
        self.start_ns = self.start_ns.min(other.start_ns);
        self.end_ns = self.end_ns.max(other.end_ns);
        if self.root_name.is_none() {
            self.root_name = other.root_name;
            self.root_service = other.root_service;
        }
        self.status = self.status.max(other.status);
        for a in other.attributes {
            if self.attributes.len() >= MAX_SEARCH_ATTRIBUTES {
                break;
            }
            self.attributes.insert(a);
        }
    }

    /// The service the index shows: the root's, else the first span's.
    pub fn service(&self) -> &str {
        self.root_service.as_deref().unwrap_or(&self.first_service)
    }
}

/// One trace's spans from one request: an encoded `TracesData` and its summary.
pub struct TraceFragment {
    pub trace_id: TraceId,
    pub data: Vec<u8>,
    pub summary: TraceSummary,
}

/// Phase one's outcome.
pub struct StagedSpans {
    pub fragments: Vec<TraceFragment>,
    /// Valid spans kept by sampling: those in `fragments`.
    pub accepted: u64,
    /// Valid spans the sampling ratio of their service dropped.
    pub sampled_out: u64,
    pub rejected: u64,
    /// The first rejection's reason, for the partial-success message.
    pub first_error: Option<String>,
}

/// Why a span is refused; the message goes to the client.
fn check(span: &SpanView<'_>) -> Result<TraceId, &'static str> {
    let trace_id: TraceId = span
        .trace_id
        .try_into()
        .map_err(|_| "trace_id must be 16 bytes")?;
    if trace_id == [0; 16] {
        return Err("trace_id must not be all zeros");
    }
    if span.span_id.len() != 8 || span.span_id == [0; 8] {
        return Err("span_id must be 8 bytes, not all zeros");
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Err("parent_span_id must be empty or 8 bytes");
    }
    if span.start_time_unix_nano == 0 || span.end_time_unix_nano < span.start_time_unix_nano {
        return Err("start_time_unix_nano must be set and not after end_time_unix_nano");
    }
    if i64::try_from(span.end_time_unix_nano).is_err() {
        return Err("end_time_unix_nano is out of range");
    }
    Ok(trace_id)
}

/// Adds the search hashes of `kvs` (string, integer and boolean values) to `out`, up to
/// `MAX_SEARCH_ATTRIBUTES`; `pair` is scratch space.
fn search_pairs(kvs: &[KeyValueView<'_>], out: &mut BTreeSet<i32>, pair: &mut String) {
    for kv in kvs {
        if out.len() >= MAX_SEARCH_ATTRIBUTES {
            return;
        }
        if kv.key.len() > MAX_SEARCH_VALUE_BYTES {
            continue;
        }
        pair.clear();
        pair.push_str(kv.key);
        pair.push('=');
        // Writing into a String cannot fail.
        let _ = match kv.value {
            AnyView::Str(s) => {
                pair.push_str(s);
                Ok(())
            }
            AnyView::Int(i) => write!(pair, "{i}"),
            AnyView::Bool(b) => write!(pair, "{b}"),
            _ => continue,
        };
        if pair.len() - kv.key.len() - 1 <= MAX_SEARCH_VALUE_BYTES {
            out.insert(attribute_hash(pair));
        }
    }
}

fn summarize(
    summary: &mut TraceSummary,
    span: &SpanView<'_>,
    attributes: &[KeyValueView<'_>],
    service: &str,
    pair: &mut String,
) {
    // Checked by `check`: both times fit in i64.
    let (start, end) = (
        span.start_time_unix_nano as i64,
        span.end_time_unix_nano as i64,
    );
    if summary.spans == 0 {
        summary.start_ns = start;
        summary.end_ns = end;
        summary.first_service = service.to_owned();
    }
    summary.spans += 1;
    summary.span_bytes += span.bytes.len();
    summary.start_ns = summary.start_ns.min(start);
    summary.end_ns = summary.end_ns.max(end);
    if span.parent_span_id.is_empty() && summary.root_name.is_none() {
        summary.root_name = Some(span.name.to_owned());
        summary.root_service = Some(service.to_owned());
    }
    let status = match status::StatusCode::try_from(span.status_code) {
        Ok(status::StatusCode::Error) => STATUS_ERROR,
        Ok(status::StatusCode::Ok) => STATUS_OK,
        _ => STATUS_UNSET,
    };
    summary.status = summary.status.max(status);
    search_pairs(attributes, &mut summary.attributes, pair);
}

/// Appends one length-delimited field (`tag`, wire type 2) whose body `body` writes; the
/// body's length must be known up front (`len`), as protobuf puts it before the body.
fn field(out: &mut Vec<u8>, tag: u32, len: usize, body: impl FnOnce(&mut Vec<u8>)) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    let start = out.len();
    body(out);
    debug_assert_eq!(out.len() - start, len);
}

fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Appends to `out` one `TracesData.resource_spans` entry holding `spans` (their fields as
/// sent, in [`write_span`]'s order) under `resource` as sent, one `ScopeSpans` per run of
/// spans of one of its `scopes` (given in scope order, each with its scope's index): the
/// message `TracesData { resource_spans: [ResourceSpans { resource, scope_spans: [ScopeSpans
/// { scope, spans, schema_url }, ..], schema_url }] }`, written as prost writes it (for a
/// request encoded the way prost encodes) but for the order of each span's fields. One
/// resource copy per trace and resource, not per scope: fewer bytes for zstd to match, fewer
/// batches for a reader. (A resource the request repeats in another `ResourceSpans`, and
/// every later request, add another copy.)
fn append_fragment(
    out: &mut Vec<u8>,
    resource: &ResourceSpansView<'_>,
    scopes: &[ScopeSpansView<'_>],
    spans: &[(usize, &SpanView<'_>)],
    fields: &mut Vec<SpanField>,
) {
    debug_assert!(spans.is_sorted_by_key(|(scope, _)| *scope));
    let runs = || spans.chunk_by(|a, b| a.0 == b.0);
    let scope_spans_len = |run: &[(usize, &SpanView<'_>)]| {
        let scope = &scopes[run[0].0];
        scope.scope.map_or(0, |s| field_len(1, s.len()))
            + run
                .iter()
                .map(|(_, s)| field_len(2, s.bytes.len()))
                .sum::<usize>()
            + string_field_len(3, scope.schema_url)
    };
    let resource_spans_len = resource.resource.map_or(0, |r| field_len(1, r.len()))
        + runs()
            .map(|run| field_len(2, scope_spans_len(run)))
            .sum::<usize>()
        + string_field_len(3, resource.schema_url);
    field(out, 1, resource_spans_len, |out| {
        if let Some(bytes) = resource.resource {
            field(out, 1, bytes.len(), |out| out.extend_from_slice(bytes));
        }
        for run in runs() {
            let scope = &scopes[run[0].0];
            field(out, 2, scope_spans_len(run), |out| {
                if let Some(bytes) = scope.scope {
                    field(out, 1, bytes.len(), |out| out.extend_from_slice(bytes));
                }
                for (_, span) in run {
                    field(out, 2, span.bytes.len(), |out| {
                        write_span(out, span.bytes, fields)
                    });
                }
                string_field(out, 3, scope.schema_url);
            });
        }
        string_field(out, 3, resource.schema_url);
    });
}

/// Where a `Span` field goes in a frame: what spans of a trace share (name, kind, attributes,
/// status, flags, trace state, dropped-attribute count, unknown fields) first, then the ids
/// and times, parent and trace id (bytes seen earlier in the frame) before the times and the
/// span's own id (new bytes), then events, links and their dropped counts. zstd then finds
/// each span's shared fields in one long match instead of several broken by the ids and times
/// between them: on the benchmark's traces, 54.2 bytes of frame per span instead of 62.0.
fn span_field_rank(tag: u32) -> u8 {
    match tag {
        4 => 1,       // parent_span_id
        1 => 2,       // trace_id
        7 => 3,       // start_time_unix_nano
        8 => 4,       // end_time_unix_nano
        2 => 5,       // span_id
        11..=14 => 6, // events, links and their dropped counts
        _ => 0,
    }
}

/// A field of a span whose place in its frame is after the shared ones: its rank and its
/// bytes (key included) in the span.
type SpanField = (u8, std::ops::Range<usize>);

/// Appends the encoded span `span` to `out` with its fields ordered by [`span_field_rank`]:
/// the same bytes, so the same length, and the same message. Fields of different numbers may
/// come in any order (`Span` has no oneof); the order is stable and depends only on the field
/// number, so each number's occurrences keep their order (a repeated field's elements, and
/// which of a singular field given twice comes last: the one a reader keeps, or merges
/// into). Shared fields are written as they are walked; `fields` (scratch space) holds the
/// others until the end. Staging only writes spans a decoder has accepted; a span the walk
/// below could not read would be written as sent.
fn write_span(out: &mut Vec<u8>, span: &[u8], fields: &mut Vec<SpanField>) {
    fields.clear();
    let at = out.len();
    let mut r = Reader::new(span);
    while !r.is_empty() {
        let start = span.len() - r.remaining();
        let walked = r.key().and_then(|(tag, wire_type)| {
            r.skip(tag, wire_type, RECURSION_LIMIT)
                .map(|()| span_field_rank(tag))
        });
        let Ok(rank) = walked else {
            out.truncate(at);
            out.extend_from_slice(span);
            return;
        };
        let range = start..span.len() - r.remaining();
        if rank == 0 {
            out.extend_from_slice(&span[range]);
        } else {
            fields.push((rank, range));
        }
    }
    fields.sort_by_key(|(rank, _)| *rank);
    for (_, range) in fields.iter() {
        out.extend_from_slice(&span[range.clone()]);
    }
}

fn string_field_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        field_len(tag, s.len())
    }
}

fn string_field(out: &mut Vec<u8>, tag: u32, s: &str) {
    if !s.is_empty() {
        field(out, tag, s.len(), |out| out.extend_from_slice(s.as_bytes()));
    }
}

/// Decodes an `ExportTraceServiceRequest` and regroups by trace its valid spans that
/// `sampling` keeps.
pub fn stage(bytes: &[u8], sampling: &SamplingRatios) -> Result<StagedSpans, CoreError> {
    let mut spare = Vec::new();
    let request = decode_spans(bytes, &mut spare)?;
    let mut traces: HashMap<TraceId, (Vec<u8>, TraceSummary)> = HashMap::new();
    let (mut accepted, mut sampled_out, mut rejected) = (0u64, 0u64, 0u64);
    let mut first_error = None;
    let mut pair = String::new();
    let mut fields = Vec::new();
    // The spans of one resource by trace, in scope order, each with its scope's index.
    let mut by_trace: HashMap<TraceId, Vec<(usize, &SpanView<'_>)>> = HashMap::new();
    for resource in &request.resources {
        let sampled = sampling.of_service(resource.service);
        let scopes = resource.scopes.of(&request.scopes);
        for (index, scope) in scopes.iter().enumerate() {
            for span in scope.spans.of(&request.spans) {
                match check(span) {
                    Ok(trace_id) if sampled.keeps(&trace_id) => {
                        accepted += 1;
                        by_trace.entry(trace_id).or_default().push((index, span));
                    }
                    Ok(_) => sampled_out += 1,
                    Err(reason) => {
                        rejected += 1;
                        first_error.get_or_insert_with(|| reason.to_owned());
                    }
                }
            }
        }
        for (trace_id, spans) in by_trace.drain() {
            let (data, summary) = traces.entry(trace_id).or_default();
            for (_, span) in &spans {
                let attributes = span.attributes.of(&request.kvs);
                summarize(summary, span, attributes, resource.service, &mut pair);
            }
            append_fragment(data, resource, scopes, &spans, &mut fields);
        }
    }
    let fragments = traces
        .into_iter()
        .map(|(trace_id, (data, summary))| TraceFragment {
            trace_id,
            data,
            summary,
        })
        .collect();
    Ok(StagedSpans {
        fragments,
        accepted,
        sampled_out,
        rejected,
        first_error,
    })
}
