//! The trace core without Python: staging, blocks cut by size, frames read back, keys.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::builder::{attrs, body_of, fields_of, kv, str_value};
use super::copy_reader::{int4, int4_array, int8, text, tuples, Field};
use crate::trace_blocks::{TraceBlock, TraceCore, TraceSettings};
use crate::trace_index::{civil_from_days, sample_dictionary, with_entropy_tables};
use crate::trace_ingest::{attribute_hash, STATUS_ERROR};
use crate::trace_read::{decode_trace, join_frames};

pub(super) const NOW: i64 = 1_764_237_600_000_000_000; // 2025-11-27T10:00:00Z

/// A span of trace `[trace; 16]`, span id `[id; 8]`, starting `id` µs after `NOW`.
pub(super) fn span(trace: u8, id: u8, parent: Option<u8>, name: &str) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        start_time_unix_nano: NOW as u64 + u64::from(id) * 1_000,
        end_time_unix_nano: NOW as u64 + u64::from(id) * 1_000 + 500,
        attributes: attrs(&[("http.route", "/pay")]),
        ..Span::default()
    }
}

/// An Export request of `spans` under one resource of `service.name` `service`.
pub(super) fn request(service: &str, spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", str_value(service))],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

fn settings(block_max_bytes: usize) -> TraceSettings {
    TraceSettings {
        block_max_bytes,
        ..TraceSettings::default()
    }
}

#[test]
fn spans_of_one_trace_from_two_requests_come_back_together() {
    let core = TraceCore::new(settings(1 << 20));
    let mut failing = span(7, 2, Some(1), "charge");
    failing.status = Some(Status {
        code: status::StatusCode::Error as i32,
        message: "declined".into(),
    });
    core.ingest(
        &request("api", vec![failing, span(9, 5, None, "other")]),
        NOW,
    )
    .unwrap();
    core.ingest(&request("api", vec![span(7, 1, None, "POST /pay")]), NOW)
        .unwrap();
    assert_eq!(core.pending_spans(), 3);
    assert!(
        core.take_block(NOW, false).is_none(),
        "neither size nor age reached"
    );
    let block = core.take_block(NOW, true).unwrap();
    assert_eq!((block.traces, block.spans), (2, 3));
    assert!(block.key.starts_with("blocks/2025/11/27/10/") && block.key.ends_with(".tgb"));
    let rows = tuples(&block.index_copy);
    assert_eq!(rows.len(), 2);
    // Rows are sorted by trace id: trace 7 first, with its frame at offset 0.
    let (offset, length) = (int8(&rows[0][2]) as usize, int8(&rows[0][3]) as usize);
    assert_eq!(offset, 0);
    assert!(
        block.dictionary.is_empty(),
        "too small a block for a dictionary"
    );
    let frame = &block.data[offset..offset + length];
    let data = decode_trace(&join_frames(&[(frame, &[][..])]).unwrap()).unwrap();
    let names: Vec<&str> = data
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["charge", "POST /pay"]);
    assert_eq!(text(&rows[0][7]), "POST /pay", "root name");
    assert_eq!(int4(&rows[0][8]), i32::from(STATUS_ERROR));
    assert_eq!(int4(&rows[0][9]), 2, "span count");
    assert_eq!(
        int4_array(&rows[0][10]),
        vec![attribute_hash("http.route=/pay")]
    );
    assert_eq!(int8(&rows[0][1]), block.id, "the block's id");
    assert_eq!(core.pending_spans(), 0);
}

#[test]
fn a_block_is_due_at_the_size_limit_and_takes_whole_requests() {
    let core = TraceCore::new(settings(2_000));
    let mut seq = 0;
    while !core.block_due(NOW) {
        seq += 1;
        let spans = (0..3).map(|i| span(seq as u8, i + 1, None, "op")).collect();
        assert_eq!(core.ingest(&request("api", spans), NOW).unwrap().seq, seq);
    }
    assert!(seq > 1, "a few requests fit under the limit");
    let block = core.take_block(NOW, false).unwrap();
    assert_eq!(block.spans, 3 * seq);
    assert_eq!(block.seqs, (1..=seq).collect::<Vec<_>>());
    assert_eq!(core.pending_spans(), 0);
    assert!(core.take_block(NOW, true).is_none());
}

#[test]
fn bad_spans_are_rejected_and_the_rest_kept() {
    let core = TraceCore::new(settings(1 << 20));
    let mut zero = span(0, 1, None, "zero trace");
    zero.trace_id = vec![0; 16];
    let mut backwards = span(3, 1, None, "backwards");
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1;
    let mut short = span(3, 2, None, "short id");
    short.span_id = vec![1; 4];
    let outcome = core
        .ingest(
            &request("api", vec![zero, span(3, 3, None, "ok"), backwards, short]),
            NOW,
        )
        .unwrap();
    assert_eq!((outcome.accepted_spans, outcome.rejected_spans), (1, 3));
    let response = ExportTraceServiceResponse::decode(&outcome.response[..]).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 3);
    assert!(partial
        .error_message
        .contains("trace_id must not be all zeros"));
    assert!(core.ingest(b"\xff\xff\xff", NOW).is_err());
    assert_eq!(core.pending_spans(), 1);
}

#[test]
fn corrupt_frames_and_civil_dates() {
    assert!(join_frames(&[(b"not zstd", &[][..])]).is_err());
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(20_419), (2025, 11, 27));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
}

#[test]
fn fragments_are_the_message_prost_would_write() {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::trace::v1::TracesData;

    use crate::trace_ingest::stage;
    use crate::trace_sampling::SamplingRatios;

    let scope = InstrumentationScope {
        name: "lib".into(),
        version: "2".into(),
        ..InstrumentationScope::default()
    };
    let first = ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", str_value("api"))],
            ..Resource::default()
        }),
        scope_spans: vec![
            ScopeSpans {
                scope: Some(scope.clone()),
                spans: vec![
                    span(1, 1, None, "a"),
                    span(2, 2, None, "b"),
                    span(1, 3, Some(1), "c"),
                ],
                schema_url: "https://scope.example/1".into(),
            },
            // A scope with none of trace 1's spans, between two with some.
            ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "other".into(),
                    ..InstrumentationScope::default()
                }),
                spans: vec![span(2, 6, Some(2), "f")],
                schema_url: "https://scope.example/2".into(),
            },
            ScopeSpans {
                scope: None,
                spans: vec![span(1, 4, Some(1), "d")],
                schema_url: "https://scope.example/3".into(),
            },
        ],
        schema_url: "https://resource.example/1".into(),
    };
    let second = ResourceSpans {
        resource: None,
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope::default()),
            spans: vec![span(1, 5, Some(1), "e")],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![first.clone(), second.clone()],
    };
    let staged = stage(&request.encode_to_vec(), &SamplingRatios::default()).unwrap();
    // What regrouping with prost's own types gives for a trace: one ResourceSpans per
    // resource, holding that resource's scopes with the trace's spans.
    let keep = |rs: &ResourceSpans, names: &[&str]| ResourceSpans {
        scope_spans: rs
            .scope_spans
            .iter()
            .map(|ss| ScopeSpans {
                spans: ss
                    .spans
                    .iter()
                    .filter(|s| names.contains(&s.name.as_str()))
                    .cloned()
                    .collect(),
                ..ss.clone()
            })
            .filter(|ss| !ss.spans.is_empty())
            .collect(),
        ..rs.clone()
    };
    let fragment = |trace: u8| {
        let fragment = staged.fragments.iter().find(|f| f.trace_id == [trace; 16]);
        fragment.unwrap()
    };
    let trace_one = fragment(1);
    let expected = TracesData {
        resource_spans: vec![keep(&first, &["a", "c", "d"]), keep(&second, &["e"])],
    };
    assert_eq!(expected.resource_spans[0].scope_spans.len(), 2);
    assert_eq!(
        expected.resource_spans[0].scope_spans[1].schema_url,
        "https://scope.example/3"
    );
    // prost's bytes but for the order of each span's fields (prost writes them by number).
    assert_eq!(TracesData::decode(&trace_one.data[..]).unwrap(), expected);
    assert_eq!(
        spans_by_field_number(&trace_one.data),
        expected.encode_to_vec()
    );
    let trace_two = TracesData {
        resource_spans: vec![keep(&first, &["b", "f"])],
    };
    assert_eq!(trace_two.resource_spans[0].scope_spans.len(), 2);
    assert_eq!(
        spans_by_field_number(&fragment(2).data),
        trace_two.encode_to_vec()
    );
    assert_eq!(trace_one.summary.spans, 4);
}

/// An encoded `TracesData` with every span's fields in field-number order (stable), all other
/// bytes as they are.
fn spans_by_field_number(data: &[u8]) -> Vec<u8> {
    // The field holding the next level down: TracesData.resource_spans,
    // ResourceSpans.scope_spans, ScopeSpans.spans; then the span itself.
    fn walk(bytes: &[u8], depth: usize) -> Vec<u8> {
        let mut fields = fields_of(bytes);
        if depth == 3 {
            fields.sort_by_key(|(tag, _)| *tag);
            return fields.into_iter().flat_map(|(_, field)| field).collect();
        }
        let inner = if depth == 0 { 1 } else { 2 };
        let mut out = Vec::new();
        for (tag, field) in fields {
            if tag == inner {
                let body = body_of(&field);
                out.extend_from_slice(&field[..field.len() - body.len()]);
                out.extend(walk(body, depth + 1));
            } else {
                out.extend(field);
            }
        }
        out
    }
    walk(data, 0)
}

/// `traces` traces of 4 spans each, every span with distinct random-looking ids, one request.
/// The frame an index row of `block` points at.
fn frame_of_row<'a>(block: &'a TraceBlock, row: &[Field]) -> &'a [u8] {
    let (offset, length) = (int8(&row[2]) as usize, int8(&row[3]) as usize);
    &block.data[offset..offset + length]
}

/// Every span of the trace an index row of `block` points at, read with the block's dictionary.
fn spans_of_row(block: &TraceBlock, row: &[Field]) -> Vec<Span> {
    let frame = frame_of_row(block, row);
    let data = decode_trace(&join_frames(&[(frame, &block.dictionary[..])]).unwrap()).unwrap();
    data.resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

fn many_traces(traces: u32) -> Vec<u8> {
    let spans = (0..traces)
        .flat_map(|t| {
            (0..4u32).map(move |i| {
                let mut s = span(1, 1, None, if i == 0 { "GET /cart" } else { "SELECT" });
                let mix = |n: u64| (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let id = mix(u64::from(t));
                s.trace_id = [id.to_be_bytes(), (!id).to_be_bytes()].concat();
                s.span_id = mix(u64::from(t << 2 | i)).to_be_bytes().to_vec();
                s
            })
        })
        .collect();
    request("cart", spans)
}

#[test]
fn a_large_block_compresses_its_frames_with_one_dictionary() {
    let cut = |dictionary_bytes: usize| {
        let core = TraceCore::new(TraceSettings {
            dictionary_bytes,
            ..TraceSettings::default()
        });
        core.ingest(&many_traces(2_000), NOW).unwrap();
        core.take_block(NOW, true).unwrap()
    };
    let with = cut(4_096);
    let without = cut(0);
    assert!(!with.dictionary.is_empty() && without.dictionary.is_empty());
    assert!(
        with.data.len() * 3 < without.data.len() * 2,
        "{} bytes with the dictionary, {} without",
        with.data.len(),
        without.data.len()
    );
    let rows = tuples(&with.index_copy);
    assert_eq!(rows.len(), 2_000);
    for row in &rows {
        assert_eq!(int8(&row[1]), with.id);
        let spans = spans_of_row(&with, row);
        assert_eq!(spans.len(), 4);
        assert!(spans.iter().all(|s| s.trace_id == row[0].clone().unwrap()));
        let frame = frame_of_row(&with, row);
        assert!(
            join_frames(&[(frame, &[][..])]).is_err(),
            "a frame needs its block's dictionary"
        );
    }
    let again = cut(4_096);
    assert_eq!((again.key, again.id), (with.key.clone(), with.id));
    assert_ne!(with.id, without.id);
}

#[test]
fn a_dictionary_is_at_most_an_eighth_of_its_block() {
    let sample = |traces: usize, size: usize| {
        let trace: Vec<u8> = (0..1_000u32).map(|i| (i % 251) as u8).collect();
        sample_dictionary(std::iter::repeat_n(&trace[..], traces), size)
    };
    // 100 traces of 1,000 bytes: 12,500 bytes, every eighth trace, the last one cut.
    assert_eq!(sample(100, 256 << 10).len(), 12_500);
    assert_eq!(
        sample(1_000, 64 << 10).len(),
        64 << 10,
        "the setting bounds it"
    );
    assert!(
        sample(30, 256 << 10).is_empty(),
        "an eighth of 30,000 bytes is under the 4 KiB floor"
    );
    assert_eq!(
        sample(1, 8).len(),
        8,
        "a setting under the floor is taken as is"
    );
    assert!(sample(1_000, 0).is_empty());
}

#[test]
fn frames_of_blocks_with_other_dictionaries_read_in_turn() {
    let cut = |traces: u32| {
        let core = TraceCore::new(TraceSettings {
            dictionary_bytes: 4_096,
            ..TraceSettings::default()
        });
        core.ingest(&many_traces(traces), NOW).unwrap();
        core.take_block(NOW, true).unwrap()
    };
    // Other trace counts: other samples at another stride, so other dictionaries.
    let blocks = [cut(2_000), cut(1_500), cut(1_000)];
    assert_ne!(blocks[0].dictionary, blocks[1].dictionary);
    assert_ne!(blocks[1].dictionary, blocks[2].dictionary);
    let rows: Vec<_> = blocks.iter().map(|b| tuples(&b.index_copy)).collect();
    // Every read after the first of a block finds its dictionary prepared; a frame read with
    // another block's dictionary must still fail, never decode to something else.
    for round in 0..3 {
        for (block, rows) in blocks.iter().zip(&rows) {
            let row = &rows[round * 7];
            let spans = spans_of_row(block, row);
            assert_eq!(spans.len(), 4);
            assert!(spans.iter().all(|s| s.trace_id == row[0].clone().unwrap()));
        }
    }
    let (frame_of_first, other) = (
        frame_of_row(&blocks[0], &rows[0][0]),
        &blocks[1].dictionary[..],
    );
    let wrong = join_frames(&[(frame_of_first, other)]).and_then(|b| decode_trace(&b));
    assert!(
        wrong.map_or(true, |d| d.resource_spans.is_empty()
            || d.resource_spans[0].scope_spans[0].spans[0].trace_id
                != rows[0][0][0].clone().unwrap()),
        "a frame read with another block's dictionary does not give its trace back"
    );
}

/// One encoded trace of 6 spans whose attribute values vary with `t`.
fn varied_trace(t: u64) -> Vec<u8> {
    let mix = |n: u64| n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let spans = (0..6u64)
        .map(|i| {
            let mut s = span(
                1,
                1,
                None,
                ["GET /cart/{id}", "SELECT carts", "GET"][i as usize % 3],
            );
            s.trace_id = [mix(t).to_be_bytes(), mix(!t).to_be_bytes()].concat();
            s.span_id = mix(t << 3 | i).to_be_bytes().to_vec();
            s.start_time_unix_nano += mix(t + i) % 1_000_000;
            s.attributes = attrs(&[
                ("http.target", &format!("/cart/{}", mix(t) % 100_000)),
                (
                    "db.statement",
                    &format!("SELECT * FROM carts WHERE id = {}", t % 977),
                ),
            ]);
            s
        })
        .collect();
    request("cart", spans)
}

#[test]
fn entropy_tables_make_frames_smaller_and_still_decode() {
    let traces: Vec<Vec<u8>> = (0..1_200).map(varied_trace).collect();
    let content = sample_dictionary(traces.iter().step_by(2).map(Vec::as_slice), 16 << 10);
    let samples: Vec<&[u8]> = traces
        .iter()
        .skip(1)
        .step_by(12)
        .map(Vec::as_slice)
        .collect();
    let full = with_entropy_tables(content.clone(), &samples, 3);
    const MAGIC: [u8; 4] = 0xEC30_A437_u32.to_le_bytes();
    assert_eq!(full[..4], MAGIC, "a full dictionary, header first");
    assert_eq!(
        full[full.len() - content.len()..],
        content[..],
        "then the content"
    );
    assert_eq!(
        full,
        with_entropy_tables(content.clone(), &samples, 3),
        "deterministic"
    );
    let frames = |dictionary: &[u8]| {
        let mut c = zstd::bulk::Compressor::with_dictionary(3, dictionary).unwrap();
        // As blocks are cut: frames do not name their dictionary.
        c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))
            .unwrap();
        let mut d = zstd::bulk::Decompressor::with_dictionary(dictionary).unwrap();
        let mut total = 0;
        // Traces in neither the content nor the samples.
        for trace in traces.iter().skip(3).step_by(4) {
            let frame = c.compress(trace).unwrap();
            assert_eq!(&d.decompress(&frame, 1 << 20).unwrap(), trace);
            total += frame.len();
        }
        total
    };
    let (with_tables, content_alone) = (frames(&full), frames(&content));
    assert!(
        with_tables * 100 < content_alone * 97,
        "{with_tables} bytes of frames with entropy tables, {content_alone} without"
    );
    // Nothing to draw tables from: the content as it was.
    assert_eq!(with_entropy_tables(content.clone(), &[], 3), content);
    assert!(with_entropy_tables(Vec::new(), &samples, 3).is_empty());
    // A tiny content (a `dictionary_bytes` of a few bytes) still makes a dictionary that
    // compresses and decompresses.
    let tiny = with_entropy_tables(traces[0][..8].to_vec(), &samples, 3);
    assert_eq!(tiny[..4], MAGIC);
    let frame = zstd::bulk::Compressor::with_dictionary(3, &tiny)
        .unwrap()
        .compress(&traces[5])
        .unwrap();
    let back = zstd::bulk::Decompressor::with_dictionary(&tiny)
        .unwrap()
        .decompress(&frame, 1 << 20)
        .unwrap();
    assert_eq!(back, traces[5]);
}
