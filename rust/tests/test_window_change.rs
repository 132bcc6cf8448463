//! A live change of the window length: windows that begin before the effective time keep the
//! old length, those from it on have the new one, and no two windows of a series overlap.

use super::builder::*;
use super::copy_reader::*;
use crate::copy_binary::ns_to_pg_micros;
use crate::ingest::{Batch, MetricsCore};
use crate::staged::Limits;
use crate::windows::{RollupSettings, NS_PER_SECOND};

const S: i64 = NS_PER_SECOND;

/// (window start in PG microseconds, window seconds, points) of the window rows of a batch.
fn windows(batch: &Batch) -> Vec<(i64, i32, i64)> {
    let rows = tuples(&batch.rollups_copy);
    let mut out: Vec<(i64, i32, i64)> = rows[..batch.window_rollup_rows as usize]
        .iter()
        .map(|r| (int8(&r[1]), int4(&r[2]), int8(&r[4])))
        .collect();
    out.sort_unstable();
    out
}

fn gauge_at(core: &MetricsCore, times: &[i64]) {
    let points = times
        .iter()
        .map(|&t| number(t as u64, 1.0, vec![]))
        .collect();
    let out = core
        .ingest(&request(vec![gauge("g", points)]), NOW)
        .unwrap();
    assert_eq!(out.rejected_points, 0, "{:?}", out.rejected_by_reason);
}

fn assert_no_overlap(rows: &[(i64, i32, i64)]) {
    for pair in rows.windows(2) {
        let (start, seconds, _) = pair[0];
        assert!(
            start + i64::from(seconds) * 1_000_000 <= pair[1].0,
            "{pair:?}"
        );
    }
}

fn core_with_window(seconds: i64) -> MetricsCore {
    let settings = RollupSettings {
        window_ns: seconds * S,
        ..RollupSettings::default()
    };
    MetricsCore::new(Limits::default(), settings)
}

#[test]
fn a_longer_window_applies_from_the_end_of_the_open_ones() {
    let core = core_with_window(60);
    // NOW is 800 s into its hour: the open minute is [780 s, 840 s), and the first multiple
    // of 300 s at or after its end is 900 s.
    let hour = NOW - NOW.rem_euclid(3600 * S);
    gauge_at(&core, &[NOW - S]);
    assert_eq!(core.window_ns(), 60 * S);
    let effective = hour + 900 * S;
    assert_eq!(core.set_window_ns(300 * S), Some(effective));
    assert_eq!(core.window_ns(), 300 * S);
    gauge_at(&core, &[effective - S, effective + S, effective + 299 * S]);

    // At the end of the last 60 s window plus the lateness only the old windows close.
    let batch = core
        .take_batch_at(effective + 60 * S, false, false)
        .unwrap();
    let us = ns_to_pg_micros;
    let first = windows(&batch);
    assert_eq!(
        first,
        vec![(us(hour + 780 * S), 60, 1), (us(hour + 840 * S), 60, 1)]
    );
    let batch = core
        .take_batch_at(effective + 360 * S, false, false)
        .unwrap();
    assert_eq!(windows(&batch), vec![(us(effective), 300, 2)]);
    let mut all = first;
    all.extend(windows(&batch));
    assert_no_overlap(&all);
}

#[test]
fn a_shorter_window_starts_at_a_multiple_of_both_lengths() {
    let core = core_with_window(300);
    let hour = NOW - NOW.rem_euclid(3600 * S);
    let open = hour + 600 * S;
    gauge_at(&core, &[NOW - S]);
    // 300 s → 120 s: the open window ends at 900 s, a multiple of 120 s would be 960 s, but
    // a 300 s window [900 s, 1200 s) would then overlap it: the next multiple of 600 s.
    let effective = hour + 1200 * S;
    assert_eq!(core.set_window_ns(120 * S), Some(effective));
    let old = effective - 300 * S;
    gauge_at(
        &core,
        &[
            old + S,
            effective - S,
            effective,
            effective + 119 * S,
            effective + 120 * S,
        ],
    );
    let batch = core.take_batch_at(i64::MAX, true, true).unwrap();
    let us = ns_to_pg_micros;
    let rows = windows(&batch);
    let expected = vec![
        (us(open), 300, 1),
        (us(old), 300, 2),
        (us(effective), 120, 2),
        (us(effective + 120 * S), 120, 1),
    ];
    assert_eq!(rows, expected);
    assert_no_overlap(&rows);
}

#[test]
fn setting_the_same_length_changes_nothing_and_hours_merge_both_lengths() {
    let core = core_with_window(60);
    // NOW is 800 s (13 min 20 s) into its hour.
    let hour = NOW - NOW.rem_euclid(3600 * S);
    assert_eq!(NOW - hour, 800 * S);
    gauge_at(&core, &[NOW - S]);
    assert_eq!(core.set_window_ns(60 * S), None);
    // The open minute ends at 840 s: the next multiple of 600 s is 1200 s.
    let effective = hour + 1200 * S;
    assert_eq!(core.set_window_ns(600 * S), Some(effective));
    assert_eq!(core.set_window_ns(600 * S), None);
    gauge_at(&core, &[effective - S, effective + S]);
    let batch = core.take_batch_at(i64::MAX, true, true).unwrap();
    let rows = windows(&batch);
    let us = ns_to_pg_micros;
    assert_eq!(
        rows,
        vec![
            (us(hour + 780 * S), 60, 1),
            (us(effective - 60 * S), 60, 1),
            (us(effective), 600, 1)
        ]
    );
    let hours = &tuples(&batch.rollups_copy)[rows.len()..];
    assert_eq!(hours.len(), 1);
    assert_eq!(
        (int8(&hours[0][1]), int4(&hours[0][2]), int8(&hours[0][4])),
        (us(hour), 3600, 3)
    );
}
