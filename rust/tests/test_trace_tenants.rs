//! Tenants and sampling in the trace core: one frame and one index row per (tenant, trace),
//! and sampling decided by the trace id's randomness and the ratio of the span's service:
//! kept when the randomness is at least the threshold (1 − ratio) · 2^56.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::copy_reader::{int4, int8, text, tuples, Field};
use super::test_trace_sampling::EIGHT;
use super::test_traces::{request, span, NOW};
use crate::trace_blocks::{TraceBlock, TraceCore, TraceSettings};
use crate::trace_ingest::TraceId;
use crate::trace_read::{decode_trace, join_frames};
use crate::trace_sampling::SamplingRatios;

const TENANT_COLUMN: usize = 11;

/// A trace id whose randomness (rightmost 7 bytes) is `randomness`; the first 9 bytes are
/// 0x5a so the id is never all zeros.
pub(super) fn trace_id(randomness: u64) -> TraceId {
    assert!(randomness < 1 << 56);
    let mut id = [0x5a; 16];
    id[8..].copy_from_slice(&randomness.to_be_bytes());
    id[8] = 0x5a;
    id
}

/// `span` of trace `id` instead of `[trace; 16]`.
fn span_in(trace: TraceId, id: u8, parent: Option<u8>, name: &str) -> Span {
    Span {
        trace_id: trace.to_vec(),
        ..super::test_traces::span(1, id, parent, name)
    }
}

pub(super) fn ratios(by_service: &[(&str, f64)], default: f64) -> SamplingRatios {
    let map: HashMap<String, f64> = by_service
        .iter()
        .map(|(s, r)| ((*s).to_owned(), *r))
        .collect();
    SamplingRatios::new(map, default).unwrap()
}

/// (tenant, trace id, span names) of every row of a block, in row order.
fn rows_of(block: &TraceBlock) -> Vec<(String, Vec<u8>, Vec<String>)> {
    let bytes = |f: &Field| f.clone().unwrap();
    tuples(&block.index_copy)
        .iter()
        .map(|row| {
            assert_eq!(row.len(), 12);
            let (offset, length) = (int8(&row[2]) as usize, int8(&row[3]) as usize);
            let frame = &block.data[offset..offset + length];
            let data =
                decode_trace(&join_frames(&[(frame, &block.dictionary[..])]).unwrap()).unwrap();
            let names = data
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.name.clone())
                .collect();
            let names: Vec<String> = names;
            assert_eq!(int4(&row[9]) as usize, names.len(), "span_count");
            (text(&row[TENANT_COLUMN]), bytes(&row[0]), names)
        })
        .collect()
}

#[test]
fn two_tenants_with_one_trace_id_get_a_frame_and_a_row_each() {
    let core = TraceCore::new(TraceSettings::default());
    let a = vec![span(7, 1, None, "a-root"), span(7, 2, Some(1), "a-child")];
    core.ingest_seq(&request("api", a), NOW, None, "acme")
        .unwrap();
    core.ingest_seq(
        &request("api", vec![span(7, 3, None, "b-root")]),
        NOW,
        None,
        "bolt",
    )
    .unwrap();
    // An empty tenant (a spool record from before tenants) is the default tenant, and so
    // is `ingest` without one.
    core.ingest_seq(
        &request("api", vec![span(7, 4, None, "old")]),
        NOW,
        None,
        "",
    )
    .unwrap();
    core.ingest(&request("api", vec![span(7, 5, Some(4), "new")]), NOW)
        .unwrap();
    core.ingest_seq(
        &request("api", vec![span(7, 6, Some(1), "a-late")]),
        NOW,
        None,
        "acme",
    )
    .unwrap();
    let block = core.take_block(NOW, true).unwrap();
    assert_eq!((block.traces, block.spans), (3, 6));
    let rows = rows_of(&block);
    let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        rows,
        vec![
            (
                "acme".to_owned(),
                vec![7; 16],
                names(&["a-root", "a-child", "a-late"])
            ),
            ("bolt".to_owned(), vec![7; 16], names(&["b-root"])),
            ("default".to_owned(), vec![7; 16], names(&["old", "new"])),
        ]
    );
}

#[test]
fn exact_kept_traces_at_ratios_from_zero_to_one() {
    for (ratio, kept) in [(0.0, 0), (0.25, 2), (0.5, 4), (0.75, 6), (1.0, 8)] {
        let core = TraceCore::new(TraceSettings::default());
        core.set_sampling(ratios(&[], ratio));
        let spans = EIGHT
            .iter()
            .flat_map(|&r| {
                [
                    span_in(trace_id(r), 1, None, "root"),
                    span_in(trace_id(r), 2, Some(1), "child"),
                ]
            })
            .collect();
        let outcome = core.ingest(&request("api", spans), NOW).unwrap();
        assert_eq!(
            (
                outcome.accepted_spans,
                outcome.sampled_out_spans,
                outcome.rejected_spans
            ),
            (2 * kept, 2 * (8 - kept), 0),
            "ratio {ratio}"
        );
        // Sampling is not an error: a plain success, without partial_success.
        let response = ExportTraceServiceResponse::decode(&outcome.response[..]).unwrap();
        assert_eq!(response.partial_success, None);
        assert_eq!(outcome.error_message, "");
        assert_eq!(core.pending_spans(), 2 * kept);
        let stored: Vec<Vec<u8>> = match core.take_block(NOW, true) {
            Some(block) => rows_of(&block).into_iter().map(|r| r.1).collect(),
            None => Vec::new(),
        };
        // The highest randomness values, in trace id order.
        let expected: Vec<Vec<u8>> = EIGHT[8 - kept as usize..]
            .iter()
            .map(|&r| trace_id(r).to_vec())
            .collect();
        assert_eq!(stored, expected, "ratio {ratio}");
    }
}

#[test]
fn rejections_are_counted_apart_from_sampled_out_spans() {
    let core = TraceCore::new(TraceSettings::default());
    core.set_sampling(ratios(&[], 0.5));
    let mut bad = span_in(trace_id(EIGHT[4]), 3, None, "bad");
    bad.span_id = vec![0; 8];
    let spans = vec![
        span_in(trace_id(EIGHT[4]), 1, None, "kept at the threshold"),
        span_in(trace_id(EIGHT[3]), 2, None, "sampled out one below it"),
        bad,
    ];
    let outcome = core.ingest(&request("api", spans), NOW).unwrap();
    assert_eq!(
        (
            outcome.accepted_spans,
            outcome.sampled_out_spans,
            outcome.rejected_spans
        ),
        (1, 1, 1)
    );
    let partial = ExportTraceServiceResponse::decode(&outcome.response[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(
        partial.rejected_spans, 1,
        "sampled-out spans are not rejected"
    );
}

#[test]
fn each_service_has_its_ratio_and_a_trace_is_kept_or_dropped_whole() {
    let core = TraceCore::new(TraceSettings::default());
    // api and web at 0.5, db drops all, every other service keeps all.
    core.set_sampling(ratios(&[("api", 0.5), ("web", 0.5), ("db", 0.0)], 1.0));
    // 0.5 keeps `high` (three quarters of 2^56) and drops `low` (a quarter).
    let (low, high) = (trace_id(EIGHT[2]), trace_id(EIGHT[6]));
    let mut summed = (0, 0);
    // One trace of each kind crosses web and api over three requests.
    for (service, id) in [("web", 1), ("api", 2), ("web", 3)] {
        let parent = (id > 1).then_some(id - 1);
        let spans = vec![
            span_in(low, id, parent, &format!("low-{service}-{id}")),
            span_in(high, id, parent, &format!("high-{service}-{id}")),
        ];
        let outcome = core.ingest(&request(service, spans), NOW).unwrap();
        summed.0 += outcome.accepted_spans;
        summed.1 += outcome.sampled_out_spans;
    }
    let db = core
        .ingest(
            &request("db", vec![span_in(high, 9, Some(1), "query")]),
            NOW,
        )
        .unwrap();
    let other = core
        .ingest(
            &request("cache", vec![span_in(low, 8, Some(1), "get")]),
            NOW,
        )
        .unwrap();
    assert_eq!(summed, (3, 3));
    assert_eq!((db.accepted_spans, db.sampled_out_spans), (0, 1));
    assert_eq!((other.accepted_spans, other.sampled_out_spans), (1, 0));
    let rows = rows_of(&core.take_block(NOW, true).unwrap());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].1, low.to_vec());
    assert_eq!(
        rows[0].2,
        ["get"],
        "only the service that keeps all kept it"
    );
    assert_eq!(rows[1].1, high.to_vec());
    assert_eq!(rows[1].2, ["high-web-1", "high-api-2", "high-web-3"]);
}

#[test]
fn ratios_change_in_place_and_check_reports_the_same() {
    let core = TraceCore::new(TraceSettings::default());
    // Span ids differ: readers drop repeats of one span id.
    let mut next_id = 0;
    let mut one = |name: &str| {
        next_id += 1;
        // A quarter of 2^56: dropped at 0.5, and exactly the threshold of 0.75.
        request(
            "api",
            vec![span_in(trace_id(EIGHT[2]), next_id, None, name)],
        )
    };
    let first = core.ingest(&one("kept at 1"), NOW).unwrap();
    assert_eq!((first.accepted_spans, first.sampled_out_spans), (1, 0));
    core.set_sampling(ratios(&[("api", 0.5)], 1.0));
    let checked = core.check(&one("checked")).unwrap();
    assert_eq!((checked.accepted_spans, checked.sampled_out_spans), (0, 1));
    let second = core.ingest(&one("dropped at 0.5"), NOW).unwrap();
    assert_eq!((second.accepted_spans, second.sampled_out_spans), (0, 1));
    core.set_sampling(ratios(&[("api", 0.5)], 0.0));
    let third = core.ingest(&one("dropped at 0.5 still"), NOW).unwrap();
    assert_eq!(
        third.sampled_out_spans, 1,
        "the service's ratio wins over the default"
    );
    core.set_sampling(ratios(&[("api", 0.75)], 0.0));
    let fourth = core.ingest(&one("kept at 0.75"), NOW).unwrap();
    assert_eq!(fourth.accepted_spans, 1);
    // The span queued before the first change is still there, with the last one.
    let rows = rows_of(&core.take_block(NOW, true).unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2, ["kept at 1", "kept at 0.75"]);
    assert_eq!(
        (checked.seq, core.pending_spans()),
        (2, 0),
        "check took a sequence number and queued nothing"
    );
}
