//! The borrowed decoder against prost: same accept/reject decision on every input, the same
//! decoded content, and the same staged points, rows and COPY bytes as the request prost
//! re-encodes. Inputs: random valid requests, odd but valid encodings, truncations, byte flips
//! and nesting around the recursion limit.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::encoding::{encode_key, WireType};
use prost::Message;

use super::builder::*;
use super::random_requests::*;
use super::view_reference::{normalize, to_prost};
use crate::decode::stage_request;
use crate::otlp_decode::{decode_lazy_point, decode_request, decode_request_lazy};
use crate::otlp_view::RequestView;
use crate::staged::Limits;

/// Checks one input; returns whether it decoded.
pub fn check(bytes: &[u8]) -> bool {
    let reference = ExportMetricsServiceRequest::decode(bytes);
    let mut spare = Vec::new();
    let ours = decode_request(bytes, &mut spare);
    // The lazy decode ingest uses, after the inputs checked before on this thread (the
    // unmutated request among them): the same decision and, once its attributes left
    // undecoded are decoded, the same view.
    let mut lazy_spare = Vec::new();
    let lazy = decode_request_lazy(bytes, &mut lazy_spare).map(|mut view| {
        decode_every_lazy_point(&mut view);
        to_prost(&view).encode_to_vec()
    });
    assert_eq!(lazy.is_ok(), ours.is_ok(), "lazy decode of {bytes:?}");
    match (reference, ours) {
        (Err(_), Err(_)) => false,
        (Ok(request), Ok(view)) => {
            let expected = normalize(request.clone()).encode_to_vec();
            assert_eq!(
                to_prost(&view).encode_to_vec(),
                expected,
                "view of {bytes:?}"
            );
            assert_eq!(lazy.ok(), Some(expected), "lazy view of {bytes:?}");
            let canonical = request.encode_to_vec();
            compare_staged(bytes, &canonical);
            compare_ingest(bytes, &canonical);
            true
        }
        (a, b) => panic!("prost ok={} vs ours {:?} on {bytes:?}", a.is_ok(), b.err()),
    }
}

/// Decodes the attributes a lazy decode left undecoded, as series rows do.
pub fn decode_every_lazy_point(view: &mut RequestView<'_>) {
    (0..view.points.len()).for_each(|i| decode_lazy_point(view, i));
}

fn compare_staged(a: &[u8], b: &[u8]) {
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    let limits = Limits::default();
    let x = stage_request(decode_request(a, &mut sa).unwrap(), "default", NOW, &limits);
    let y = stage_request(decode_request(b, &mut sb).unwrap(), "default", NOW, &limits);
    assert_eq!(x.points, y.points);
    assert_eq!(x.rows, y.rows);
    assert_eq!(x.total_points, y.total_points);
    assert_eq!(x.rejections.message(1), y.rejections.message(1));
}

fn compare_ingest(a: &[u8], b: &[u8]) {
    let (ca, cb) = (core(), core());
    let (oa, ob) = (ca.ingest(a, NOW).unwrap(), cb.ingest(b, NOW).unwrap());
    assert_eq!(
        (
            oa.accepted_points,
            oa.rejected_points,
            &oa.rejected_by_reason
        ),
        (
            ob.accepted_points,
            ob.rejected_points,
            &ob.rejected_by_reason
        )
    );
    assert_eq!(
        (&oa.error_message, &oa.response),
        (&ob.error_message, &ob.response)
    );
    match (ca.take_batch(), cb.take_batch()) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            assert_eq!(x.series_copy, y.series_copy);
            assert_eq!(x.point_chunks_copy, y.point_chunks_copy);
            assert_eq!(x.histogram_chunks_copy, y.histogram_chunks_copy);
            assert_eq!(x.exp_histogram_points_copy, y.exp_histogram_points_copy);
            assert_eq!(x.summary_points_copy, y.summary_points_copy);
            assert_eq!((x.points, x.days), (y.points, y.days));
        }
        _ => panic!("one batch is empty"),
    }
}

/// Truncations and byte flips of `bytes`, each checked.
fn mutate_and_check(rng: &mut Rng, bytes: &[u8], rounds: usize) {
    for _ in 0..rounds {
        let mut m = bytes.to_vec();
        if m.is_empty() {
            return;
        }
        if rng.chance(3) {
            m.truncate(rng.below(m.len() as u64) as usize);
        } else {
            let at = rng.below(m.len() as u64) as usize;
            m[at] ^= 1 << rng.below(8);
        }
        check(&m);
    }
}

#[test]
fn random_requests_and_their_mutations_agree_with_prost() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..1500 {
        let bytes = random_request(&mut rng).encode_to_vec();
        assert!(check(&bytes));
        mutate_and_check(&mut rng, &bytes, 4);
    }
}

#[test]
fn odd_encodings_agree_with_prost() {
    let mut rng = Rng(42);
    for _ in 0..400 {
        let bytes = odd_request(&mut rng);
        assert!(check(&bytes), "{bytes:?}");
        mutate_and_check(&mut rng, &bytes, 4);
    }
}

#[test]
fn unknown_fields_everywhere_are_skipped() {
    let mut metric = gauge("cpu", vec![number(T, 1.0, attrs(&[("a", "b")]))]).encode_to_vec();
    unknown_fields(&mut metric);
    let mut req = wrap_metric(&metric);
    unknown_fields(&mut req);
    assert!(check(&req));
    assert_eq!(core().ingest(&req, NOW).unwrap().accepted_points, 1);
}

fn nested_arrays(depth: usize, deepest_unknown: bool) -> Vec<u8> {
    let mut value = Vec::new();
    ld(&mut value, 1, b"leaf");
    for level in 0..depth {
        let mut arr = Vec::new();
        if deepest_unknown && level == 0 {
            // Only an unknown field: prost spends budget on skipping it, so at the last level
            // with any budget left, even this is an error.
            vint(&mut arr, 50, 1);
        } else {
            ld(&mut arr, 1, &value);
        }
        value.clear();
        ld(&mut value, 5, &arr);
    }
    let mut kv = Vec::new();
    ld(&mut kv, 1, b"deep");
    ld(&mut kv, 2, &value);
    let mut point = number(T, 1.0, vec![]).encode_to_vec();
    ld(&mut point, 7, &kv);
    wrap_gauge_point(b"cpu", &point)
}

#[test]
fn nesting_around_the_recursion_limit_agrees_with_prost() {
    let mut decoded = Vec::new();
    for depth in 40..52 {
        decoded.push(check(&nested_arrays(depth, false)));
        decoded.push(check(&nested_arrays(depth, true)));
    }
    for depth in 25..36 {
        decoded.push(check(&deep_kvlist_request(depth)));
    }
    assert!(decoded.contains(&true) && decoded.contains(&false));
    assert!(!check(&deep_kvlist_request(10_000)));
}

#[test]
fn groups_are_skipped_or_rejected_like_prost() {
    let valid = request(vec![gauge("cpu", vec![number(T, 1.0, vec![])])]);
    let mut cases = Vec::new();
    for (open, close) in [(7, 7), (7, 8), (0, 7), (7, 0)] {
        let mut bytes = valid.clone();
        if open > 0 {
            encode_key(open, WireType::StartGroup, &mut bytes);
        }
        if close > 0 {
            encode_key(close, WireType::EndGroup, &mut bytes);
        }
        cases.push(check(&bytes));
    }
    assert_eq!(cases, [true, false, false, false]);
}

#[test]
fn ten_thousand_mutations_never_panic() {
    let mut rng = Rng(7);
    let base = random_request(&mut rng).encode_to_vec();
    let core = core();
    for _ in 0..10_000 {
        let mut m = base.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len() as u64 + 1) as usize;
            match rng.below(5) {
                0 if at < m.len() => m[at] = rng.next() as u8,
                1 => m.insert(at, rng.next() as u8),
                2 if at < m.len() => drop(m.remove(at)),
                3 => m.truncate(at),
                _ => m
                    .splice(at..at, base[..at.min(base.len())].iter().copied())
                    .for_each(drop),
            }
        }
        let ours = core.ingest(&m, NOW).is_ok();
        assert_eq!(
            ours,
            ExportMetricsServiceRequest::decode(&m[..]).is_ok(),
            "{m:?}"
        );
    }
}
