//! Buffers and batches: where each type lands, exact values, days, forget and collisions.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use super::builder::*;
use super::copy_reader::*;
use crate::copy_binary::{ns_to_pg_micros, OID_INT8, OID_TIMESTAMPTZ};

const DAY: u64 = 86_400_000_000_000;

fn us(ns: u64) -> i64 {
    ns_to_pg_micros(ns as i64)
}

#[test]
fn gauge_and_sum_points_become_chunks() {
    let core = core();
    let mut s1 = number(T, 5.0, vec![]);
    s1.start_time_unix_nano = T - 10;
    let s2 = number(T + 1000, 6.0, vec![]); // start unset → NULL element
    let bytes = request(vec![
        gauge(
            "g",
            vec![number(T, 1.5, vec![]), number(T - 2000, -2.0, vec![])],
        ),
        sum("s", CUMULATIVE, true, vec![s1, s2]),
    ]);
    let out = core.ingest(&bytes, NOW).unwrap();
    assert_eq!((out.accepted_points, out.rejected_points), (4, 0));
    assert!(out.response.is_empty());
    assert_eq!(core.buffered_points(), 4);
    let batch = core.take_batch().unwrap();
    assert_eq!(
        (batch.points, batch.chunk_rows, batch.new_series_ids.len()),
        (4, 2, 2)
    );
    assert_eq!(batch.days, vec![(T / DAY) as i64]);
    assert!(batch.histogram_chunks_copy.is_empty() && batch.summary_points_copy.is_empty());
    let series = tuples(&batch.series_copy);
    let chunks = tuples(&batch.point_chunks_copy);
    for chunk in &chunks {
        let row = series
            .iter()
            .find(|s| s[0] == chunk[0])
            .expect("chunk of a new series");
        match text(&row[2]).as_str() {
            "g" => {
                assert_eq!(text(&row[3]), "gauge");
                assert_eq!((row[4].clone(), row[5].clone()), (None, None));
                assert_eq!((int8(&chunk[1]), int8(&chunk[2])), (us(T - 2000), us(T)));
                assert_eq!(int4(&chunk[3]), 2);
                assert_eq!(
                    int8_array(&chunk[4]),
                    vec![Some(us(T)), Some(us(T - 2000))],
                    "arrival order"
                );
                assert_eq!(float8_array(&chunk[5]), vec![1.5, -2.0]);
                assert_eq!(chunk[6], None);
            }
            "s" => {
                assert_eq!(text(&row[4]), "cumulative");
                assert_eq!(row[5], Some(vec![1]));
                assert_eq!(float8_array(&chunk[5]), vec![5.0, 6.0]);
                assert_eq!(array8(&chunk[6]).0, OID_TIMESTAMPTZ);
                assert_eq!(int8_array(&chunk[6]), vec![Some(us(T - 10)), None]);
            }
            other => panic!("unexpected series {other}"),
        }
    }
    assert_eq!(core.buffered_points(), 0);
    assert!(core.take_batch().is_none());
}

#[test]
fn series_row_columns() {
    let core = core();
    let attributes = vec![
        kv("s", str_value("v")),
        kv("b", value(Value::BoolValue(false))),
        kv("i", value(Value::IntValue(-3))),
        kv("d", value(Value::DoubleValue(f64::NAN))),
        kv("raw", value(Value::BytesValue(vec![0, 255]))),
        kv(
            "list",
            array(vec![str_value("x"), value(Value::DoubleValue(0.5))]),
        ),
        kv("map", kvlist(attrs(&[("k", "v")]))),
        kv(
            "none",
            opentelemetry_proto::tonic::common::v1::AnyValue { value: None },
        ),
    ];
    let mut m = gauge("cpu", vec![number(T, 1.0, attributes)]);
    m.description = "CPU use".into();
    let req = request_with(
        attrs(&[("service.name", "api")]),
        scope("lib", attrs(&[("x", "y")])),
        vec![m],
    );
    core.ingest(&req.encode_to_vec(), NOW).unwrap();
    let row = &tuples(&core.take_batch().unwrap().series_copy)[0];
    assert_eq!(row.len(), 13);
    assert_eq!(text(&row[12]), "default");
    assert_eq!(
        (text(&row[2]), text(&row[3]), text(&row[6]), text(&row[7])),
        ("cpu".into(), "gauge".into(), "1".into(), "CPU use".into())
    );
    assert_eq!(jsonb(&row[8]), serde_json::json!({"service.name": "api"}));
    assert_eq!(
        jsonb(&row[9]),
        serde_json::json!({"name": "lib", "version": "1.0", "attributes": {"x": "y"}})
    );
    assert_eq!(
        jsonb(&row[10]),
        serde_json::json!({"s": "v", "b": false, "i": -3, "d": "NaN", "raw": "AP8=", "list": ["x", 0.5], "map": {"k": "v"}, "none": null})
    );
    assert_eq!(int8(&row[11]), ns_to_pg_micros(NOW));
}

#[test]
fn histogram_exp_histogram_and_summary_rows() {
    let core = core();
    let mut h = histogram_point(T, vec![1.0, 5.0], vec![1, 2, 3]);
    h.start_time_unix_nano = T - 60_000_000_000;
    h.min = Some(0.5);
    let bytes = request(vec![
        histogram("h", DELTA, vec![h]),
        exp_histogram("e", vec![exp_point(T, 3, 2, vec![4, 5], vec![1])]),
        summary("q", vec![summary_point(T, 9.0, &[(0.5, 1.0), (0.99, 3.0)])]),
    ]);
    assert_eq!(core.ingest(&bytes, NOW).unwrap().accepted_points, 3);
    let batch = core.take_batch().unwrap();
    assert_eq!(
        (
            batch.histogram_chunk_rows,
            batch.exp_histogram_rows,
            batch.summary_rows,
            batch.chunk_rows
        ),
        (1, 1, 1, 0)
    );
    assert!(batch.point_chunks_copy.is_empty());
    let h = &tuples(&batch.histogram_chunks_copy)[0];
    assert_eq!(h.len(), 12);
    assert_eq!((int8(&h[1]), int8(&h[2]), int4(&h[3])), (us(T), us(T), 1));
    assert_eq!(int8_array(&h[4]), vec![Some(us(T))]);
    assert_eq!(int8_array(&h[5]), vec![Some(us(T - 60_000_000_000))]);
    assert_eq!(int8_array(&h[6]), vec![Some(6)]);
    assert_eq!(float8_array(&h[7]), vec![10.5]);
    assert_eq!(float8_array(&h[8]), vec![0.5]);
    assert_eq!(array8(&h[9]).1, vec![None], "max absent: a NULL element");
    assert_eq!(float8_array(&h[10]), vec![1.0, 5.0]);
    assert_eq!(array8(&h[11]).0, OID_INT8);
    assert_eq!(int8_array(&h[11]), vec![Some(1), Some(2), Some(3)]);
    let e = &tuples(&batch.exp_histogram_points_copy)[0];
    assert_eq!(e.len(), 14);
    assert_eq!(
        (
            e[2].clone(),
            int8(&e[3]),
            e[4].clone(),
            int4(&e[7]),
            int8(&e[8])
        ),
        (None, 12, None, 3, 2)
    );
    assert_eq!((float8(&e[9]), int4(&e[10]), int4(&e[12])), (0.0, 3, -2));
    assert_eq!(
        (int8_array(&e[11]), int8_array(&e[13])),
        (vec![Some(4), Some(5)], vec![Some(1)])
    );
    let q = &tuples(&batch.summary_points_copy)[0];
    assert_eq!(q.len(), 7);
    assert_eq!((int8(&q[3]), float8(&q[4])), (7, 9.0));
    assert_eq!(
        (float8_array(&q[5]), float8_array(&q[6])),
        (vec![0.5, 0.99], vec![1.0, 3.0])
    );
    // Each row's series_id is a series of the batch.
    let series: Vec<i64> = tuples(&batch.series_copy)
        .iter()
        .map(|r| int8(&r[0]))
        .collect();
    for id in [int8(&h[0]), int8(&e[1]), int8(&q[1])] {
        assert!(series.contains(&id));
    }
}

#[test]
fn chunks_are_grouped_by_series_and_day() {
    let core = core();
    let midnight = (T / DAY) * DAY;
    let points = vec![
        number(midnight - 1, 1.0, vec![]),
        number(midnight, 2.0, vec![]),
        number(midnight + 5, 3.0, vec![]),
    ];
    core.ingest(&request(vec![gauge("g", points)]), NOW)
        .unwrap();
    core.ingest(
        &request(vec![gauge("g", vec![number(midnight + 9, 4.0, vec![])])]),
        NOW,
    )
    .unwrap();
    let batch = core.take_batch().unwrap();
    let day = (midnight / DAY) as i64;
    assert_eq!(batch.days, vec![day - 1, day]);
    assert_eq!(
        (batch.chunk_rows, batch.new_series_ids.len(), batch.points),
        (2, 1, 4)
    );
    let chunks = tuples(&batch.point_chunks_copy);
    assert_eq!(float8_array(&chunks[0][5]), vec![1.0]);
    assert_eq!(float8_array(&chunks[1][5]), vec![2.0, 3.0, 4.0]);
}

#[test]
fn known_series_are_written_once_and_forget_sends_them_again() {
    let core = core();
    let bytes = request(vec![gauge("g", vec![number(T, 1.0, vec![])])]);
    core.ingest(&bytes, NOW).unwrap();
    let first = core.take_batch().unwrap();
    assert_eq!((first.new_series_ids.len(), core.known_series()), (1, 1));
    core.ingest(&bytes, NOW).unwrap();
    let second = core.take_batch().unwrap();
    assert!(second.series_copy.is_empty() && second.new_series_ids.is_empty());
    core.forget_series(&first.new_series_ids);
    assert_eq!(core.known_series(), 0);
    core.ingest(&bytes, NOW).unwrap();
    assert_eq!(
        core.take_batch().unwrap().new_series_ids,
        first.new_series_ids
    );
}

#[test]
fn id_collision_is_counted_and_rejected_never_merged() {
    let core = core();
    let bytes = request(vec![
        histogram("h", DELTA, vec![histogram_point(T, vec![], vec![])]),
        gauge("g", vec![number(T, 1.0, vec![])]),
    ]);
    // Learn the real ids, then replace the registry with fake fingerprints for them.
    core.ingest(&bytes, NOW).unwrap();
    let ids = core.take_batch().unwrap().new_series_ids;
    core.forget_series(&ids);
    for &id in &ids {
        core.inject_known_series(id, 12345);
    }
    let out = core.ingest(&bytes, NOW).unwrap();
    assert_eq!((out.accepted_points, out.rejected_points), (0, 2));
    assert_eq!(out.rejected_by_reason, vec![("series_id_collision", 2)]);
    assert_eq!(core.series_collisions(), 2);
    core.ingest(&bytes, NOW).unwrap();
    assert_eq!(core.series_collisions(), 2, "distinct ids");
    let batch = core.take_batch().unwrap();
    assert_eq!(
        (batch.points, batch.chunk_rows, batch.series_copy.len()),
        (0, 0, 0)
    );
}

#[test]
fn concurrent_ingests_lose_nothing() {
    let core = core();
    std::thread::scope(|s| {
        for t in 0..4 {
            let core = &core;
            s.spawn(move || {
                for i in 0..50 {
                    let points = (0..20)
                        .map(|p| number(T, 1.0, attrs(&[("p", &format!("{t}-{i}-{p}"))])))
                        .collect();
                    core.ingest(&request(vec![gauge("g", points)]), NOW)
                        .unwrap();
                }
            });
        }
        s.spawn(|| {
            for _ in 0..20 {
                core.take_batch();
            }
        });
    });
    core.take_batch();
    assert_eq!(core.known_series(), 4 * 50 * 20);
    assert_eq!(core.buffered_points(), 0);
}
