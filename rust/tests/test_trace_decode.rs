//! The borrowed span decoder against prost: it never takes bytes prost refuses, staging
//! accepts exactly what prost accepts, and the frames staging writes hold the spans prost
//! decodes, field by field. Inputs: full spans (events, links, status, nested values), merged
//! singular messages, every truncation and every single-bit flip of them.

use std::collections::{BTreeMap, BTreeSet};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, InstrumentationScope};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{
    status, ResourceSpans, ScopeSpans, Span, Status, TracesData,
};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use super::builder::{array, attrs, body_of, fields_of, kv, kvlist, str_value, value};
use super::test_traces::{span, NOW};
use crate::otlp_spans::walk_spans;
use crate::trace_ingest::{attribute_hash, stage, STATUS_ERROR};
use crate::trace_sampling::SamplingRatios;

/// A span with every field set: events, links, status, flags, nested attribute values.
fn full_span(trace: u8, id: u8, parent: Option<u8>) -> Span {
    let mut s = span(trace, id, parent, "POST /checkout");
    s.trace_state = "vendor=1".into();
    s.flags = 0x301;
    s.kind = 2;
    s.attributes
        .push(kv("http.status_code", value(Value::IntValue(503))));
    s.attributes
        .push(kv("retry", value(Value::BoolValue(true))));
    s.attributes.push(kv(
        "items",
        array(vec![str_value("a"), value(Value::DoubleValue(1.5))]),
    ));
    s.attributes
        .push(kv("nested", kvlist(vec![kv("k", str_value("ü"))])));
    s.events.push(Event {
        time_unix_nano: s.start_time_unix_nano + 10,
        name: "exception".into(),
        attributes: attrs(&[("exception.type", "TimeoutError")]),
        dropped_attributes_count: 1,
    });
    s.links.push(Link {
        trace_id: vec![9; 16],
        span_id: vec![9; 8],
        trace_state: "x=y".into(),
        attributes: attrs(&[("link", "follows")]),
        dropped_attributes_count: 2,
        flags: 1,
    });
    s.status = Some(Status {
        message: "upstream failed".into(),
        code: status::StatusCode::Error as i32,
    });
    s.dropped_attributes_count = 3;
    s.dropped_events_count = 4;
    s.dropped_links_count = 5;
    s
}

fn full_request() -> ExportTraceServiceRequest {
    let resource = |service: &str| Resource {
        attributes: vec![
            kv("service.name", str_value(service)),
            kv("host", str_value("h1")),
        ],
        dropped_attributes_count: 1,
        ..Resource::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource("cart")),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "http".into(),
                            version: "1.0".into(),
                            attributes: attrs(&[("lib", "x")]),
                            dropped_attributes_count: 0,
                        }),
                        spans: vec![full_span(1, 1, None), full_span(2, 2, None)],
                        schema_url: "https://scope".into(),
                    },
                    ScopeSpans {
                        spans: vec![full_span(1, 3, Some(1))],
                        ..ScopeSpans::default()
                    },
                ],
                schema_url: "https://resource".into(),
            },
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![full_span(2, 4, Some(2))],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            },
        ],
    }
}

/// Every span of `data`, with its resource and scope, by (trace id, span id).
fn spans_by_id(data: &TracesData) -> BTreeMap<(Vec<u8>, Vec<u8>), String> {
    let mut out = BTreeMap::new();
    for rs in &data.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let whole = format!(
                    "{:?} {} {:?} {} {s:?}",
                    rs.resource, rs.schema_url, ss.scope, ss.schema_url
                );
                out.insert((s.trace_id.clone(), s.span_id.clone()), whole);
            }
        }
    }
    out
}

/// Checks one input; returns whether it was accepted.
fn check(bytes: &[u8]) -> bool {
    let reference = ExportTraceServiceRequest::decode(bytes);
    if walk_spans(bytes).is_ok() {
        assert!(
            reference.is_ok(),
            "the walker took bytes prost refuses: {bytes:?}"
        );
    }
    let staged = stage(bytes, &SamplingRatios::default());
    let request = match (reference, staged) {
        (Err(_), Err(_)) => return false,
        (Ok(request), Ok(staged)) => (request, staged),
        (a, b) => panic!(
            "prost ok={} vs staging ok={} on {bytes:?}",
            a.is_ok(),
            b.is_ok()
        ),
    };
    let (request, staged) = request;
    let sent: usize = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    assert_eq!(
        (staged.accepted + staged.rejected) as usize,
        sent,
        "every span is kept or rejected: {bytes:?}"
    );
    let expected = spans_by_id(&TracesData {
        resource_spans: request.resource_spans,
    });
    let mut got = BTreeMap::new();
    for fragment in &staged.fragments {
        let data = TracesData::decode(&fragment.data[..]).expect("a fragment decodes");
        got.extend(spans_by_id(&data));
    }
    // Rejected spans (a flip can make an id the wrong length) are in no fragment.
    let kept: BTreeMap<_, _> = expected
        .into_iter()
        .filter(|(key, _)| got.contains_key(key))
        .collect();
    assert_eq!(got, kept, "staged spans of {bytes:?}");
    assert_eq!(staged.accepted as usize, got.len());
    true
}

#[test]
fn staged_frames_hold_what_prost_decodes() {
    let bytes = full_request().encode_to_vec();
    assert!(walk_spans(&bytes).is_ok());
    assert!(check(&bytes));
    let staged = stage(&bytes, &SamplingRatios::default()).unwrap();
    assert_eq!((staged.accepted, staged.fragments.len()), (4, 2));
    // What the index rows say, as the prost-based staging said it.
    let mut summaries: Vec<_> = staged.fragments.iter().map(|f| &f.summary).collect();
    summaries.sort_by_key(|s| s.start_ns);
    let first = summaries[0];
    assert_eq!(first.spans, 2);
    assert_eq!(first.root_name.as_deref(), Some("POST /checkout"));
    assert_eq!(first.service(), "cart");
    assert_eq!(first.status, STATUS_ERROR);
    assert_eq!((first.start_ns, first.end_ns), (NOW + 1_000, NOW + 3_500));
    let expected: BTreeSet<i32> = ["http.route=/pay", "http.status_code=503", "retry=true"]
        .into_iter()
        .map(attribute_hash)
        .collect();
    assert_eq!(
        first.attributes, expected,
        "string, int and bool values; not arrays"
    );
    // The second trace's root is under a resource without `service.name`.
    assert_eq!(summaries[1].service(), "cart");
    assert_eq!(summaries[1].spans, 2);
}

/// `inner` as length-delimited field `tag`.
fn field(tag: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

#[test]
fn a_status_given_twice_is_merged_as_prost_merges_it() {
    let mut s = span(1, 1, None, "GET");
    s.status = Some(Status {
        message: "first".into(),
        code: status::StatusCode::Ok as i32,
    });
    // A second `status` (field 15) holding only an error code: protobuf merges the two.
    let second = Status {
        message: String::new(),
        code: status::StatusCode::Error as i32,
    };
    let span_bytes = [s.encode_to_vec(), field(15, &second.encode_to_vec())].concat();
    let merged = Span::decode(&span_bytes[..]).unwrap().status.unwrap();
    assert_eq!(
        (merged.code, &merged.message[..]),
        (status::StatusCode::Error as i32, "first")
    );
    // request { resource_spans { scope_spans { spans } } }
    let bytes = field(1, &field(2, &field(2, &span_bytes)));
    assert!(
        walk_spans(&bytes).is_err(),
        "the walker leaves merges to prost"
    );
    assert!(check(&bytes));
    let staged = stage(&bytes, &SamplingRatios::default()).unwrap();
    assert_eq!(staged.fragments[0].summary.status, STATUS_ERROR);
}

#[test]
fn truncations_and_byte_flips_are_taken_only_when_prost_takes_them() {
    let bytes = full_request().encode_to_vec();
    let mut accepted = 0;
    for len in 0..bytes.len() {
        accepted += usize::from(check(&bytes[..len]));
    }
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
            let mut mutated = bytes.clone();
            mutated[i] ^= flip;
            accepted += usize::from(check(&mutated));
        }
    }
    // Some of them are valid requests (a flipped value byte, a cut between spans).
    assert!(accepted > 100, "{accepted} accepted");
}

/// The one span of a one-span frame, as encoded there.
fn only_span(frame: &[u8]) -> Vec<u8> {
    let [(1, resource_spans)] = &fields_of(frame)[..] else {
        panic!("one resource_spans");
    };
    let scope_spans = fields_of(body_of(resource_spans))
        .into_iter()
        .find(|(tag, _)| *tag == 2)
        .unwrap()
        .1;
    let spans: Vec<_> = fields_of(body_of(&scope_spans))
        .into_iter()
        .filter(|(tag, _)| *tag == 2)
        .collect();
    assert_eq!(spans.len(), 1);
    body_of(&spans[0].1).to_vec()
}

#[test]
fn frames_hold_a_span_shared_fields_first_and_the_same_message() {
    let mut s = full_span(1, 1, Some(2));
    s.name = "first name".into();
    // Enough fields of each rank that an unstable sort would reorder some of them.
    for i in 0..40 {
        s.attributes
            .push(kv(&format!("k{i}"), str_value(&format!("v{i}"))));
        s.events.push(Event {
            time_unix_nano: s.start_time_unix_nano + i,
            name: format!("e{i}"),
            ..Event::default()
        });
    }
    let unknown = |value: u64| {
        let mut out = Vec::new();
        encode_key(99, WireType::Varint, &mut out);
        encode_varint(value, &mut out);
        out
    };
    // prost writes fields by number; then a second name (the one kept), two unknown fields
    // and an attribute after the span's events and links.
    let span_bytes = [
        s.encode_to_vec(),
        field(5, b"last name"),
        unknown(7),
        field(9, &kv("late", str_value("yes")).encode_to_vec()),
        unknown(8),
    ]
    .concat();
    let bytes = field(1, &field(2, &field(2, &span_bytes)));
    assert!(walk_spans(&bytes).is_ok());
    assert!(check(&bytes), "frames hold what prost decodes");
    let staged = stage(&bytes, &SamplingRatios::default()).unwrap();
    let written = only_span(&staged.fragments[0].data);
    let sent_span = Span::decode(&span_bytes[..]).unwrap();
    assert_eq!(sent_span.name, "last name");
    assert_eq!(Span::decode(&written[..]).unwrap(), sent_span);
    // Shared fields as sent, then parent, trace id, start, end, span id, then events and
    // links as sent: byte for byte.
    let sent = fields_of(&span_bytes);
    let of = |tags: &[u32]| -> Vec<u8> {
        sent.iter()
            .filter(|(tag, _)| tags.contains(tag))
            .flat_map(|(_, bytes)| bytes.clone())
            .collect()
    };
    let shared: Vec<u8> = sent
        .iter()
        .filter(|(tag, _)| ![1, 2, 4, 7, 8, 11, 12, 13, 14].contains(tag))
        .flat_map(|(_, bytes)| bytes.clone())
        .collect();
    let expected = [
        shared,
        of(&[4]),
        of(&[1]),
        of(&[7]),
        of(&[8]),
        of(&[2]),
        of(&[11, 12, 13, 14]),
    ]
    .concat();
    assert_eq!(written, expected);
    let tags: Vec<u32> = fields_of(&written).iter().map(|(tag, _)| *tag).collect();
    assert_eq!(tags.iter().filter(|t| **t == 9).count(), 46);
    assert_eq!(tags.iter().filter(|t| **t == 11).count(), 41);
    assert_eq!(&tags[tags.len() - 49..tags.len() - 44], [4, 1, 7, 8, 2]);
}
