//! Every rejection reason, with partial acceptance and the client message.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{number_data_point, Metric};
use prost::Message;

use super::builder::*;
use crate::validate::FLAG_NO_RECORDED_VALUE;

const HOUR: u64 = 3_600_000_000_000;

fn good() -> Metric {
    gauge("good", vec![number(T, 1.0, vec![])])
}

/// Ingests `bad` next to one good point; checks exactly one reason and one accepted point.
fn rejected_for(bad: Metric) -> (&'static str, u64) {
    let out = core().ingest(&request(vec![good(), bad]), NOW).unwrap();
    assert_eq!(out.accepted_points, 1, "{:?}", out.rejected_by_reason);
    assert_eq!(
        out.rejected_by_reason.len(),
        1,
        "{:?}",
        out.rejected_by_reason
    );
    assert!(out
        .error_message
        .starts_with(&format!("rejected {} of", out.rejected_points)));
    out.rejected_by_reason[0]
}

fn with_attr(v: opentelemetry_proto::tonic::common::v1::AnyValue) -> Metric {
    gauge("m", vec![number(T, 1.0, vec![kv("a", v)])])
}

#[test]
fn point_reasons() {
    let mut no_value = number(T, 1.0, vec![]);
    no_value.value = None;
    let mut stale = number(T, 1.0, vec![]);
    stale.flags = FLAG_NO_RECORDED_VALUE;
    let mut deep = str_value("x");
    for _ in 0..40 {
        deep = array(vec![deep]);
    }
    let mut bad_hist = histogram_point(T, vec![1.0, 2.0], vec![1, 2, 3]);
    bad_hist.count = 5;
    let cases: Vec<(Metric, &str)> = vec![
        (
            gauge("m", vec![number(0, 1.0, vec![])]),
            "missing_timestamp",
        ),
        (
            gauge("m", vec![number(T - 31 * 24 * HOUR, 1.0, vec![])]),
            "timestamp_too_old",
        ),
        (
            gauge("m", vec![number(T + 2 * HOUR, 1.0, vec![])]),
            "timestamp_in_future",
        ),
        (
            gauge("m", vec![number(u64::MAX, 1.0, vec![])]),
            "timestamp_in_future",
        ),
        (
            gauge("m", vec![number(T, f64::NAN, vec![])]),
            "non_finite_value",
        ),
        (
            sum("m", DELTA, true, vec![number(T, f64::NEG_INFINITY, vec![])]),
            "non_finite_value",
        ),
        (gauge("m", vec![no_value]), "missing_value"),
        (gauge("m", vec![stale]), "no_recorded_value"),
        (
            sum("m", 0, true, vec![number(T, 1.0, vec![])]),
            "unspecified_temporality",
        ),
        (
            histogram("m", 0, vec![histogram_point(T, vec![], vec![])]),
            "unspecified_temporality",
        ),
        (
            gauge("m", vec![number(T, 1.0, attrs(&[("a", "1"), ("a", "2")]))]),
            "duplicate_attribute_key",
        ),
        (
            with_attr(kvlist(attrs(&[("b", "1"), ("b", "1")]))),
            "duplicate_attribute_key",
        ),
        (with_attr(str_value("nul\0inside")), "nul_in_attribute"),
        (
            gauge("m", vec![number(T, 1.0, attrs(&[("k\0", "v")]))]),
            "nul_in_attribute",
        ),
        (
            with_attr(kvlist(attrs(&[("n", "deep\0")]))),
            "nul_in_attribute",
        ),
        (
            with_attr(array(vec![str_value(&"x".repeat(5000))])),
            "attribute_value_too_long",
        ),
        (
            with_attr(value(Value::BytesValue(vec![0; 5000]))),
            "attribute_value_too_long",
        ),
        (
            gauge(
                "m",
                vec![number(T, 1.0, attrs(&[(&"k".repeat(5000), "v")]))],
            ),
            "attribute_value_too_long",
        ),
        (with_attr(deep), "attribute_too_deep"),
        (gauge("", vec![number(T, 1.0, vec![])]), "invalid_name"),
        (
            gauge(&"n".repeat(1025), vec![number(T, 1.0, vec![])]),
            "invalid_name",
        ),
        (gauge("a\0b", vec![number(T, 1.0, vec![])]), "invalid_name"),
        (
            histogram("m", DELTA, vec![histogram_point(T, vec![1.0], vec![1])]),
            "invalid_histogram",
        ),
        (
            histogram(
                "m",
                DELTA,
                vec![histogram_point(T, vec![2.0, 1.0], vec![1, 1, 1])],
            ),
            "invalid_histogram",
        ),
        (
            histogram(
                "m",
                DELTA,
                vec![histogram_point(T, vec![f64::INFINITY], vec![1, 1])],
            ),
            "invalid_histogram",
        ),
        (histogram("m", DELTA, vec![bad_hist]), "invalid_histogram"),
        (
            exp_histogram("m", vec![exp_point(T, 21, 0, vec![1], vec![])]),
            "invalid_exponential_histogram",
        ),
        (
            exp_histogram("m", vec![exp_point(T, -11, 0, vec![1], vec![])]),
            "invalid_exponential_histogram",
        ),
        (
            summary("m", vec![summary_point(T, 1.0, &[(1.5, 1.0)])]),
            "invalid_summary",
        ),
        (
            summary("m", vec![summary_point(T, f64::NAN, &[])]),
            "non_finite_value",
        ),
        (
            summary("m", vec![summary_point(T, 1.0, &[(0.5, f64::INFINITY)])]),
            "non_finite_value",
        ),
    ];
    for (metric, want) in cases {
        let name = metric.name.clone();
        assert_eq!(rejected_for(metric), (want, 1), "metric {name:?}");
    }
    let mut e = exp_point(T, 0, 1, vec![1], vec![1]);
    e.count = 9;
    assert_eq!(
        rejected_for(exp_histogram("m", vec![e])),
        ("invalid_exponential_histogram", 1)
    );
    let mut h = histogram_point(T, vec![1.0], vec![1, 1]);
    h.max = Some(f64::NAN);
    assert_eq!(
        rejected_for(histogram("m", DELTA, vec![h])),
        ("non_finite_value", 1)
    );
}

#[test]
fn int_values_are_accepted() {
    let mut p = number(T, 0.0, vec![]);
    p.value = Some(number_data_point::Value::AsInt(42));
    let out = core()
        .ingest(&request(vec![gauge("m", vec![p])]), NOW)
        .unwrap();
    assert_eq!(out.accepted_points, 1);
}

#[test]
fn resource_problem_rejects_every_point_under_it() {
    let req = request_with(
        attrs(&[("k", "bad\0value")]),
        scope("lib", vec![]),
        vec![
            gauge("a", vec![number(T, 1.0, vec![]); 3]),
            sum("b", DELTA, true, vec![number(T, 1.0, vec![]); 2]),
        ],
    );
    let out = core().ingest(&req.encode_to_vec(), NOW).unwrap();
    assert_eq!(out.accepted_points, 0);
    assert_eq!(out.rejected_by_reason, vec![("nul_in_attribute", 5)]);
}

#[test]
fn scope_problem_rejects_every_point_under_it() {
    let many: Vec<_> = (0..200)
        .map(|i| kv(&format!("k{i}"), str_value("v")))
        .collect();
    let req = request_with(
        vec![],
        scope("lib", many),
        vec![gauge("a", vec![number(T, 1.0, vec![]); 4])],
    );
    let out = core().ingest(&req.encode_to_vec(), NOW).unwrap();
    assert_eq!(out.rejected_by_reason, vec![("too_many_attributes", 4)]);
}

#[test]
fn metric_without_data_counts_nothing() {
    let mut empty = gauge("none", vec![]);
    empty.data = None;
    let out = core().ingest(&request(vec![empty, good()]), NOW).unwrap();
    assert_eq!((out.accepted_points, out.rejected_points), (1, 0));
    assert!(out.error_message.is_empty() && out.response.is_empty());
}

#[test]
fn message_names_counts_and_first_examples() {
    let bytes = request(vec![
        good(),
        gauge(
            "cpu",
            vec![number(T, f64::NAN, vec![]), number(T, f64::NAN, vec![])],
        ),
        gauge("x\"y", vec![number(0, 1.0, vec![])]),
    ]);
    let out = core().ingest(&bytes, NOW).unwrap();
    assert_eq!(out.rejected_points, 3);
    assert_eq!(
        out.error_message,
        "rejected 3 of 4 data points: 2 non_finite_value (metric \"cpu\": value is NaN), \
         1 missing_timestamp (metric \"x\\\"y\": time_unix_nano is 0)"
    );
}

#[test]
fn message_truncates_long_names_and_stays_short() {
    let long = "é".repeat(300);
    let out = core()
        .ingest(
            &request(vec![gauge(&long, vec![number(0, 1.0, vec![])])]),
            NOW,
        )
        .unwrap();
    assert!(out
        .error_message
        .contains(&format!("\"{}\"", "é".repeat(100))));
    assert!(!out.error_message.contains(&"é".repeat(101)));
    // Every reason at once still fits in about 1 KiB.
    assert!(out.error_message.len() < 1100);
}
