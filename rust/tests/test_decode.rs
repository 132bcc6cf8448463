//! Malformed input: every case is a `CoreError::Decode` or a clean empty result.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

use super::builder::*;
use crate::error::CoreError;

fn decode_error(bytes: &[u8]) -> String {
    match core().ingest(bytes, NOW) {
        Err(e @ CoreError::Decode(_)) => e.to_string(),
        Ok(_) => panic!("decoded"),
        Err(e) => panic!("not a decode error: {e}"),
    }
}

#[test]
fn empty_request_is_valid() {
    let core = core();
    let out = core.ingest(b"", NOW).unwrap();
    assert_eq!((out.accepted_points, out.rejected_points), (0, 0));
    assert!(out.response.is_empty() && out.error_message.is_empty());
    // Nothing to store, but the request is accounted for (its spool record can be released).
    let batch = core.take_batch().unwrap();
    assert_eq!(
        (batch.points, batch.chunk_rows, batch.seqs),
        (0, 0, vec![1])
    );
}

#[test]
fn truncated_bytes() {
    let bytes = request(vec![gauge(
        "cpu",
        vec![number(T, 1.0, attrs(&[("a", "b")]))],
    )]);
    let msg = decode_error(&bytes[..bytes.len() - 3]);
    assert!(
        msg.starts_with("cannot decode ExportMetricsServiceRequest: "),
        "{msg}"
    );
}

#[test]
fn random_bytes() {
    // A fixed xorshift stream: reproducible garbage.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    decode_error(&bytes);
}

#[test]
fn wrong_wire_type() {
    // Field 1 (resource_metrics) as a varint instead of a length-delimited message.
    decode_error(&[0x08, 0x01]);
}

#[test]
fn invalid_utf8_in_string_field() {
    let mut bytes = request(vec![gauge("cpu", vec![number(T, 1.0, vec![])])]);
    let at = bytes.windows(3).position(|w| w == b"cpu").unwrap();
    bytes[at] = 0xff;
    decode_error(&bytes);
}

#[test]
fn ten_thousand_deep_kvlist_hits_the_recursion_limit() {
    let msg = decode_error(&deep_kvlist_request(10_000));
    assert!(msg.contains("recursion limit"), "{msg}");
    assert!(msg.len() < 600, "long prost paths are shortened: {msg}");
}

#[test]
fn hand_encoded_deep_request_decodes_below_the_limits() {
    // Checks the hand encoder itself. Each kvlist level is three protobuf messages (AnyValue,
    // KeyValueList, KeyValue), so prost's limit of 100 stops kvlists at about 30 levels, before
    // MAX_DEPTH; nested arrays (two messages a level) reach `attribute_too_deep` instead.
    let out = core().ingest(&deep_kvlist_request(20), NOW).unwrap();
    assert_eq!(out.accepted_points, 1);
    decode_error(&deep_kvlist_request(40));
}

#[test]
fn ten_thousand_attributes_are_rejected_not_fatal() {
    let many: Vec<KeyValue> = (0..10_000)
        .map(|i| kv(&format!("k{i}"), str_value("v")))
        .collect();
    let bytes = request(vec![gauge(
        "cpu",
        vec![number(T, 1.0, many), number(T, 2.0, vec![])],
    )]);
    let out = core().ingest(&bytes, NOW).unwrap();
    assert_eq!(out.accepted_points, 1);
    assert_eq!(out.rejected_by_reason, vec![("too_many_attributes", 1)]);
}

#[test]
fn one_mib_attribute_value_is_rejected() {
    let big = "x".repeat(1 << 20);
    let bytes = request(vec![gauge(
        "cpu",
        vec![number(T, 1.0, attrs(&[("big", &big)]))],
    )]);
    let out = core().ingest(&bytes, NOW).unwrap();
    assert_eq!(
        out.rejected_by_reason,
        vec![("attribute_value_too_long", 1)]
    );
}

#[test]
fn response_partial_success_round_trips() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    let bytes = request(vec![gauge(
        "cpu",
        vec![number(T, f64::NAN, vec![]), number(T, 1.0, vec![])],
    )]);
    let out = core().ingest(&bytes, NOW).unwrap();
    let resp = ExportMetricsServiceResponse::decode(&out.response[..]).unwrap();
    let partial = resp.partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 1);
    assert_eq!(partial.error_message, out.error_message);
}
