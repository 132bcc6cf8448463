//! Tenants: the tenant in series identity and in every `series` and `rollups` row, and the
//! per-tenant active-series limit (refusals, idle expiry, replays, live changes, `check`).

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::builder::*;
use super::copy_reader::*;
use crate::ingest::{IngestOutcome, MetricsCore};
use crate::tenants::SeriesLimits;
use crate::windows::NS_PER_SECOND;

const MINUTE: i64 = 60 * NS_PER_SECOND;

/// A gauge `cpu` with `series` series (attribute `host`), `points` points each at `time`.
fn hosts(series: usize, points: usize, time: u64) -> Metric {
    let mut all = Vec::new();
    for h in 0..series {
        for p in 0..points {
            let host = format!("h{h}");
            all.push(number(time + p as u64, 1.0, attrs(&[("host", &host)])));
        }
    }
    gauge("cpu", all)
}

fn send(core: &MetricsCore, tenant: &str, metric: Metric, now_ns: i64) -> IngestOutcome {
    core.ingest_as(tenant, &request(vec![metric]), now_ns, None)
        .unwrap()
}

fn limits(pairs: &[(&str, u64)], default: Option<u64>) -> SeriesLimits {
    SeriesLimits {
        by_tenant: pairs.iter().map(|(t, l)| (t.to_string(), *l)).collect(),
        default,
    }
}

fn series_limit_rejections(out: &IngestOutcome) -> u64 {
    out.rejected_by_reason
        .iter()
        .find(|(r, _)| *r == "series_limit")
        .map_or(0, |(_, n)| *n)
}

#[test]
fn the_same_request_from_two_tenants_is_two_series_in_every_row() {
    let core = core();
    let metric = || {
        gauge(
            "cpu",
            vec![number(T, 1.0, vec![]), number(T + 1, 3.0, vec![])],
        )
    };
    send(&core, "acme", metric(), NOW);
    send(&core, "globex", metric(), NOW);
    let batch = core.take_batch_at(NOW, true, true).unwrap();
    let series: BTreeMap<String, i64> = tuples(&batch.series_copy)
        .iter()
        .map(|r| (text(&r[12]), int8(&r[0])))
        .collect();
    assert_eq!(series.len(), 2);
    assert_ne!(series["acme"], series["globex"]);
    let tenant_of: HashMap<i64, String> = series.iter().map(|(t, id)| (*id, t.clone())).collect();
    let rollups = tuples(&batch.rollups_copy);
    assert_eq!((batch.window_rollup_rows, batch.hour_rollup_rows), (2, 2));
    assert_eq!(rollups.len(), 4);
    for row in &rollups {
        assert_eq!(text(&row[29]), tenant_of[&int8(&row[0])]);
        assert_eq!(int8(&row[4]), 2, "points of the row");
    }
    let mut per_tenant: BTreeMap<String, usize> = BTreeMap::new();
    rollups
        .iter()
        .for_each(|r| *per_tenant.entry(text(&r[29])).or_default() += 1);
    assert_eq!(
        per_tenant,
        BTreeMap::from([("acme".into(), 2), ("globex".into(), 2)])
    );
    assert_eq!(core.known_series(), 2);
}

#[test]
fn points_of_new_series_past_the_limit_are_rejected_and_active_ones_flow() {
    let core = core();
    core.set_series_limits(limits(&[("acme", 3)], None));
    let out = send(&core, "acme", hosts(5, 2, T), NOW);
    assert_eq!((out.accepted_points, out.rejected_points), (6, 4));
    assert_eq!(series_limit_rejections(&out), 4);
    assert_eq!(
        out.error_message,
        "rejected 4 of 10 data points: 4 series_limit (metric \"cpu\": tenant acme is at its \
         limit of 3 active series: 4 points of new series rejected)"
    );
    assert_eq!(core.active_series("acme"), 3);
    let batch = core.take_batch().unwrap();
    assert_eq!((batch.points, batch.new_series_ids.len()), (6, 3));

    // The three active series keep flowing in a request that also carries two more.
    let out = send(&core, "acme", hosts(5, 1, T + 10), NOW);
    assert_eq!((out.accepted_points, out.rejected_points), (3, 2));
    assert_eq!(core.active_series("acme"), 3);
    let batch = core.take_batch().unwrap();
    assert_eq!((batch.points, batch.new_series_ids.len()), (3, 0));

    // Other tenants have no limit.
    let out = send(&core, "globex", hosts(5, 1, T), NOW);
    assert_eq!((out.accepted_points, out.rejected_points), (5, 0));
    assert_eq!(
        core.active_series_by_tenant(),
        HashMap::from([
            ("default".into(), 0),
            ("acme".into(), 3),
            ("globex".into(), 5)
        ])
    );
}

#[test]
fn check_answers_as_ingest_would_and_records_nothing() {
    let core = core();
    core.set_series_limits(limits(&[], Some(2)));
    send(&core, "acme", hosts(1, 1, T), NOW);
    let req = request(vec![hosts(4, 2, T + 5)]);
    let checked = core.check_as("acme", &req, NOW).unwrap();
    assert_eq!((checked.accepted_points, checked.rejected_points), (4, 4));
    assert_eq!(core.active_series("acme"), 1);
    let ingested = core.ingest_as("acme", &req, NOW, None).unwrap();
    assert_eq!(
        (ingested.accepted_points, ingested.rejected_points),
        (checked.accepted_points, checked.rejected_points)
    );
    assert_eq!(ingested.error_message, checked.error_message);
    assert_eq!(core.active_series("acme"), 2);
}

#[test]
fn idle_series_leave_the_count_after_an_hour_and_free_room() {
    let core = core();
    core.set_series_limits(limits(&[("acme", 2)], None));
    send(&core, "acme", hosts(2, 1, T), NOW);
    let new_series = |time: u64| gauge("mem", vec![number(time, 1.0, vec![])]);
    let later = NOW + 30 * MINUTE;
    let out = send(&core, "acme", new_series(T + 30 * MINUTE as u64), later);
    assert_eq!((out.accepted_points, out.rejected_points), (0, 1));
    assert_eq!(core.active_series("acme"), 2);

    // Idle for more than an hour: the next sweep ends both.
    let much_later = NOW + 61 * MINUTE;
    let out = send(
        &core,
        "acme",
        new_series(T + 61 * MINUTE as u64),
        much_later,
    );
    assert_eq!((out.accepted_points, out.rejected_points), (1, 0));
    assert_eq!(core.active_series("acme"), 1);
    // One of the idle series comes back and takes the last room; the other is refused.
    let out = send(
        &core,
        "acme",
        hosts(2, 1, T + 61 * MINUTE as u64),
        much_later,
    );
    assert_eq!((out.accepted_points, out.rejected_points), (1, 1));
    assert_eq!(core.active_series("acme"), 2);
    // It was written before: no second `series` row.
    let batch = core.take_batch().unwrap();
    assert_eq!(batch.new_series_ids.len(), 3);
}

#[test]
fn replayed_requests_are_never_refused() {
    let core = core();
    core.set_series_limits(limits(&[("acme", 1)], None));
    let out = core
        .ingest_as("acme", &request(vec![hosts(3, 1, T)]), NOW, Some(7))
        .unwrap();
    assert_eq!(
        (out.accepted_points, out.rejected_points, out.seq),
        (3, 0, 7)
    );
    assert_eq!(core.active_series("acme"), 3);
    let out = send(
        &core,
        "acme",
        gauge("mem", vec![number(T, 1.0, vec![])]),
        NOW,
    );
    assert_eq!((out.accepted_points, out.rejected_points), (0, 1));
}

#[test]
fn a_deferred_request_meets_the_limit_its_check_answered_with() {
    let core = core();
    core.set_series_limits(limits(&[("acme", 2)], None));
    let bytes = request(vec![hosts(5, 1, T)]);
    let answered = core.check_as("acme", &bytes, NOW).unwrap();
    assert_eq!((answered.accepted_points, answered.rejected_points), (2, 3));
    // Ingested later under the number its check gave it: the same verdict, so the points the
    // client was told were rejected are not stored.
    let out = core
        .ingest_limited("acme", &bytes, NOW, Some(answered.seq), true)
        .unwrap();
    assert_eq!(
        (out.accepted_points, out.rejected_points, out.seq),
        (2, 3, answered.seq)
    );
    assert_eq!(series_limit_rejections(&out), 3);
    assert_eq!(core.active_series("acme"), 2);
    let batch = core.take_batch_at(NOW, true, true).unwrap();
    assert_eq!(tuples(&batch.series_copy).len(), 2);
}

#[test]
fn limits_are_raised_and_lowered_in_place() {
    let core = core();
    core.set_series_limits(limits(&[("acme", 1)], None));
    let out = send(&core, "acme", hosts(3, 1, T), NOW);
    assert_eq!(out.accepted_points, 1);
    core.set_series_limits(limits(&[("acme", 3)], None));
    let out = send(&core, "acme", hosts(3, 1, T + 1), NOW);
    assert_eq!((out.accepted_points, out.rejected_points), (3, 0));
    assert_eq!(core.active_series("acme"), 3);
    // Lowered below the active count: active series keep flowing, new ones are refused.
    core.set_series_limits(limits(&[("acme", 2)], None));
    let out = send(&core, "acme", hosts(4, 1, T + 2), NOW);
    assert_eq!((out.accepted_points, out.rejected_points), (3, 1));
    assert_eq!(core.active_series("acme"), 3);
    // The default applies to tenants without an entry; removing every limit lifts it.
    core.set_series_limits(limits(&[], Some(1)));
    let out = send(&core, "globex", hosts(2, 1, T), NOW);
    assert_eq!((out.accepted_points, out.rejected_points), (1, 1));
    core.set_series_limits(SeriesLimits::default());
    let out = send(&core, "globex", hosts(2, 1, T + 1), NOW);
    assert_eq!((out.accepted_points, out.rejected_points), (2, 0));
    assert_eq!(core.active_series("globex"), 2);
}
