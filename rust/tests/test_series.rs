//! Series ids: the documented canonical form, determinism, and what is (not) identity.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use prost::Message;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::builder::*;
use super::copy_reader::{int8, text, tuples};
use crate::series::FINGERPRINT_SEED;

/// The series ids (in COPY order) of a request's metrics.
fn ids_of(bytes: &[u8]) -> Vec<i64> {
    let core = core();
    core.ingest(bytes, NOW).unwrap();
    tuples(&core.take_batch().unwrap().series_copy)
        .iter()
        .map(|r| int8(&r[0]))
        .collect()
}

fn id(metric: Metric) -> i64 {
    let ids = ids_of(&request(vec![metric]));
    assert_eq!(ids.len(), 1);
    ids[0]
}

fn field(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

#[test]
fn id_matches_the_documented_canonical_form() {
    for tenant in ["default", "acme"] {
        let m = sum(
            "req",
            CUMULATIVE,
            true,
            vec![number(
                T,
                1.0,
                vec![
                    kv("n", value(Value::IntValue(7))),
                    kv("b", value(Value::BoolValue(true))),
                ],
            )],
        );
        let mut c = Vec::new();
        for f in [tenant, "req", "1", "sum", "cumulative", "1"] {
            field(&mut c, f.as_bytes());
        }
        c.extend_from_slice(&1u32.to_le_bytes()); // resource: service.name=api
        field(&mut c, b"service.name");
        c.push(1);
        field(&mut c, b"api");
        field(&mut c, b"lib");
        field(&mut c, b"1.0");
        c.extend_from_slice(&0u32.to_le_bytes()); // scope attributes
        c.extend_from_slice(&2u32.to_le_bytes()); // point attributes, sorted: b, n
        field(&mut c, b"b");
        c.extend_from_slice(&[2, 1]);
        field(&mut c, b"n");
        c.push(3);
        c.extend_from_slice(&7i64.to_le_bytes());
        let core = core();
        core.ingest_as(tenant, &request(vec![m]), NOW, None)
            .unwrap();
        let row = &tuples(&core.take_batch().unwrap().series_copy)[0];
        assert_eq!(int8(&row[0]), xxh3_64(&c) as i64);
        assert_eq!(
            int8(&row[1]),
            xxh3_64_with_seed(&c, FINGERPRINT_SEED) as i64
        );
        assert_eq!(text(&row[12]), tenant);
    }
}

#[test]
fn attribute_order_does_not_matter() {
    let a = attrs(&[("host", "a"), ("region", "eu"), ("az", "1")]);
    let mut b = a.clone();
    b.reverse();
    assert_eq!(
        id(gauge("m", vec![number(T, 1.0, a.clone())])),
        id(gauge("m", vec![number(T, 1.0, b.clone())]))
    );
    let nested_a = gauge(
        "m",
        vec![number(T, 1.0, vec![kv("map", kvlist(a.clone()))])],
    );
    let nested_b = gauge(
        "m",
        vec![number(T, 1.0, vec![kv("map", kvlist(b.clone()))])],
    );
    assert_eq!(id(nested_a), id(nested_b));
    let ra = request_with(
        a.clone(),
        scope("s", b.clone()),
        vec![gauge("m", vec![number(T, 1.0, vec![])])],
    );
    let rb = request_with(
        b,
        scope("s", a),
        vec![gauge("m", vec![number(T, 1.0, vec![])])],
    );
    assert_eq!(ids_of(&ra.encode_to_vec()), ids_of(&rb.encode_to_vec()));
}

#[test]
fn description_is_not_identity() {
    let mut described = gauge("m", vec![number(T, 1.0, vec![])]);
    described.description = "something".into();
    assert_eq!(id(described), id(gauge("m", vec![number(T, 1.0, vec![])])));
}

#[test]
fn unit_type_temporality_and_monotonic_are_identity() {
    let p = || vec![number(T, 1.0, vec![])];
    let mut other_unit = gauge("m", p());
    other_unit.unit = "s".into();
    let ids = [
        id(gauge("m", p())),
        id(other_unit),
        id(sum("m", DELTA, true, p())),
        id(sum("m", CUMULATIVE, true, p())),
        id(sum("m", CUMULATIVE, false, p())),
        id(histogram(
            "m",
            DELTA,
            vec![histogram_point(T, vec![], vec![])],
        )),
        id(summary("m", vec![summary_point(T, 1.0, &[])])),
        id(gauge("m", vec![number(T, 1.0, attrs(&[("a", "1")]))])),
        id(gauge(
            "m",
            vec![number(T, 1.0, vec![kv("a", value(Value::IntValue(1)))])],
        )),
    ];
    let mut distinct = ids.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
}

#[test]
fn field_boundaries_cannot_alias() {
    // "ab" + "c" and "a" + "bc" as key/value must differ: length prefixes keep them apart.
    let a = id(gauge("m", vec![number(T, 1.0, attrs(&[("ab", "c")]))]));
    let b = id(gauge("m", vec![number(T, 1.0, attrs(&[("a", "bc")]))]));
    assert_ne!(a, b);
}

#[test]
fn a_fingerprint_adopted_from_storage_turns_the_series_into_a_collision() {
    use crate::series::{Admission, SeriesKey, SeriesRegistry, SeriesStatus};
    let mut registry = SeriesRegistry::default();
    let ours = SeriesKey {
        id: 7,
        fingerprint: 1,
    };
    assert_eq!(registry.admit(ours, 0, 10), Admission::New);
    assert_eq!(registry.admit(ours, 0, 11), Admission::Known);
    registry.adopt_stored(7, 2);
    assert_eq!(registry.status(ours), SeriesStatus::Collision);
    assert_eq!(registry.admit(ours, 0, 12), Admission::Collision);
    let stored = SeriesKey {
        id: 7,
        fingerprint: 2,
    };
    assert_eq!(registry.admit(stored, 0, 13), Admission::Known);
    assert_eq!((registry.len(), registry.collisions()), (1, 1));
    registry.adopt_stored(8, 3);
    assert_eq!(registry.len(), 1, "an unknown id is not made known");
}
