//! Rollup windows: window and hour rows from `take_batch_at`, late partials, counter epochs,
//! histogram and summary merge rules, exponential bucket merging and `histogram_quantile`.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    SummaryDataPoint,
};

use super::builder::*;
use super::copy_reader::*;
use crate::copy_binary::ns_to_pg_micros;
use crate::exp_buckets::{BucketRange, ExpBuckets};
use crate::histogram_quantile::quantile;
use crate::ingest::{Batch, MetricsCore};
use crate::rollup_rows::PRECOMPUTED_QUANTILES;
use crate::tdigest::TDigest;
use crate::windows::{ReplayFilter, HOUR_NS, NS_PER_SECOND};

const S: i64 = NS_PER_SECOND;
const MINUTE: i64 = 60 * S;
/// Start of the hour before the one holding [`NOW`] (2023-11-14T21:00:00Z): every point of
/// these tests lies well inside the accepted time range of an ingest at `NOW`.
const HOUR0: i64 = NOW - NOW.rem_euclid(HOUR_NS) - HOUR_NS;
/// Default window length and lateness.
const LATENESS: i64 = 60 * S;

fn us(ns: i64) -> i64 {
    ns_to_pg_micros(ns)
}

/// The start of window `k` of [`HOUR0`].
fn window(k: i64) -> i64 {
    HOUR0 + k * MINUTE
}

/// The earliest `now` at which the window starting at `start` is written.
fn closes(start: i64) -> i64 {
    start + MINUTE + LATENESS
}

/// One `rollups` tuple, decoded (column order of `0002_rollups.sql`, then `tenant`).
#[derive(Debug, Clone, PartialEq)]
struct Rollup {
    series: i64,
    start: i64,
    window_seconds: i32,
    epoch: Option<i64>,
    points: i64,
    count: i64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    first_time: i64,
    first_value: Option<f64>,
    last_time: i64,
    last_value: Option<f64>,
    digest: Option<Vec<u8>>,
    /// p50, p90, p95, p99, p999.
    quantiles: [Option<f64>; 5],
    bounds: Option<Vec<f64>>,
    bucket_counts: Option<Vec<i64>>,
    exp_scale: Option<i32>,
    exp_zero_count: Option<i64>,
    exp_positive_offset: Option<i32>,
    exp_positive: Option<Vec<i64>>,
    exp_negative_offset: Option<i32>,
    exp_negative: Option<Vec<i64>>,
    summary_quantiles: Option<Vec<f64>>,
    summary_values: Option<Vec<f64>>,
    tenant: String,
}

impl Rollup {
    fn p50(&self) -> Option<f64> {
        self.quantiles[0]
    }

    fn digest(&self) -> TDigest {
        TDigest::from_bytes(self.digest.as_ref().expect("a digest")).expect("a valid digest")
    }
}

fn opt<T>(f: &Field, read: impl Fn(&Field) -> T) -> Option<T> {
    f.is_some().then(|| read(f))
}

fn counts(f: &Field) -> Vec<i64> {
    int8_array(f)
        .into_iter()
        .map(|c| c.expect("no NULL count"))
        .collect()
}

fn decode_row(f: &[Field]) -> Rollup {
    assert_eq!(f.len(), 30, "rollups columns");
    Rollup {
        series: int8(&f[0]),
        start: int8(&f[1]),
        window_seconds: int4(&f[2]),
        epoch: opt(&f[3], int8),
        points: int8(&f[4]),
        count: int8(&f[5]),
        sum: opt(&f[6], float8),
        min: opt(&f[7], float8),
        max: opt(&f[8], float8),
        first_time: int8(&f[9]),
        first_value: opt(&f[10], float8),
        last_time: int8(&f[11]),
        last_value: opt(&f[12], float8),
        digest: f[13].clone(),
        quantiles: std::array::from_fn(|i| opt(&f[14 + i], float8)),
        bounds: opt(&f[19], float8_array),
        bucket_counts: opt(&f[20], counts),
        exp_scale: opt(&f[21], int4),
        exp_zero_count: opt(&f[22], int8),
        exp_positive_offset: opt(&f[23], int4),
        exp_positive: opt(&f[24], counts),
        exp_negative_offset: opt(&f[25], int4),
        exp_negative: opt(&f[26], counts),
        summary_quantiles: opt(&f[27], float8_array),
        summary_values: opt(&f[28], float8_array),
        tenant: text(&f[29]),
    }
}

/// The rollup rows of a batch, checked against its row counters: window rows first, then
/// hour rows.
fn rollups(batch: &Batch) -> (Vec<Rollup>, Vec<Rollup>) {
    let rows: Vec<Rollup> = tuples(&batch.rollups_copy)
        .iter()
        .map(|t| decode_row(t))
        .collect();
    let windows = batch.window_rollup_rows as usize;
    assert_eq!(rows.len(), windows + batch.hour_rollup_rows as usize);
    let (w, h) = rows.split_at(windows);
    assert!(w.iter().all(|r| r.window_seconds == 60), "{w:?}");
    assert!(h.iter().all(|r| r.window_seconds == 3600), "{h:?}");
    (w.to_vec(), h.to_vec())
}

/// Series id by metric name, from the `series` rows of a batch.
fn series_ids(batch: &Batch) -> HashMap<String, i64> {
    tuples(&batch.series_copy)
        .iter()
        .map(|r| (text(&r[2]), int8(&r[0])))
        .collect()
}

/// Ingests `metrics` at [`NOW`], checking that every point is accepted.
fn ingest(core: &MetricsCore, metrics: Vec<Metric>) {
    let out = core.ingest(&request(metrics), NOW).unwrap();
    assert_eq!(out.rejected_points, 0, "{:?}", out.rejected_by_reason);
}

fn at(time: i64, v: f64) -> NumberDataPoint {
    number(time as u64, v, vec![])
}

fn started(start: i64, time: i64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        start_time_unix_nano: start as u64,
        ..at(time, v)
    }
}

/// `x[⌊q·n⌋]` of the values: what a digest of fewer than 62 values answers.
fn order_statistic(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((q * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

/// What a gauge window of `points` (time, value) must hold; `start` is its window start.
fn check_number_row(row: &Rollup, start: i64, window_seconds: i32, points: &[(i64, f64)]) {
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let first = points.iter().min_by_key(|p| p.0).unwrap();
    let last = points.iter().max_by_key(|p| p.0).unwrap();
    let n = points.len() as i64;
    assert_eq!(
        (row.start, row.window_seconds, row.epoch),
        (us(start), window_seconds, None)
    );
    assert_eq!((row.points, row.count), (n, n));
    assert_eq!(row.sum, Some(values.iter().sum()));
    assert_eq!(row.min, Some(order_statistic(&values, 0.0)));
    assert_eq!(row.max, Some(order_statistic(&values, 1.0)));
    assert_eq!(
        (row.first_time, row.first_value),
        (us(first.0), Some(first.1))
    );
    assert_eq!((row.last_time, row.last_value), (us(last.0), Some(last.1)));
    for (i, q) in PRECOMPUTED_QUANTILES.into_iter().enumerate() {
        assert_eq!(
            row.quantiles[i],
            Some(order_statistic(&values, q)),
            "q = {q}"
        );
    }
    let digest = row.digest();
    assert_eq!(digest.count(), n as u64);
    assert_eq!(digest.sum(), values.iter().sum::<f64>());
    assert_eq!((digest.min(), digest.max()), (row.min, row.max));
    assert!(digest.centroids().iter().all(|c| c.weight == 1));
    assert_eq!(digest.quantile(0.5), row.p50().unwrap());
    assert_eq!(row.bounds, None);
    assert_eq!(row.bucket_counts, None);
    assert_eq!((row.exp_scale, row.exp_positive.clone()), (None, None));
    assert_eq!(row.summary_quantiles, None);
}

/// Gauge points of three windows: (time, value), in arrival order, with duplicates and values
/// exact in binary so that sums do not depend on the order of addition.
fn three_windows() -> [Vec<(i64, f64)>; 3] {
    [
        vec![
            (window(0) + 5 * S, 3.0),
            (window(0) + S, -1.5),
            (window(0) + 30 * S, 7.25),
            (window(0) + MINUTE - 1, 2.0),
            (window(0) + 20 * S, 10.0),
        ],
        vec![(window(1), 100.0)],
        vec![
            (window(2) + 40 * S, 4.0),
            (window(2) + 10 * S, 4.0),
            (window(2) + 50 * S, 8.5),
            (window(2) + 45 * S, 1.0),
            (window(2) + 41 * S, -0.25),
            (window(2) + 42 * S, 6.0),
        ],
    ]
}

fn gauge_of(points: &[(i64, f64)]) -> Metric {
    gauge("g", points.iter().map(|&(t, v)| at(t, v)).collect())
}

#[test]
fn gauge_windows_close_by_the_clock() {
    let core = core();
    let windows = three_windows();
    let all: Vec<(i64, f64)> = windows.concat();
    ingest(&core, vec![gauge_of(&all)]);
    assert_eq!(core.open_windows(), 3);

    // Windows 0 and 1 close exactly at window 1's end + lateness; window 2 stays open.
    let batch = core.take_batch_at(closes(window(1)), false, false).unwrap();
    assert_eq!(batch.points, all.len() as u64);
    assert_eq!(batch.days, vec![HOUR0.div_euclid(86_400 * S)]);
    let (rows, hours) = rollups(&batch);
    assert!(hours.is_empty());
    assert_eq!(rows.len(), 2);
    let id = series_ids(&batch)["g"];
    assert!(rows.iter().all(|r| r.series == id));
    check_number_row(&rows[0], window(0), 60, &windows[0]);
    check_number_row(&rows[1], window(1), 60, &windows[1]);
    // Window 2, and the hour partial holding windows 0 and 1.
    assert_eq!(core.open_windows(), 2);

    // One nanosecond early: nothing closes, and nothing else is buffered.
    assert!(core
        .take_batch_at(closes(window(2)) - 1, false, false)
        .is_none());
    assert_eq!(core.open_windows(), 2);

    let batch = core.take_batch_at(closes(window(2)), false, false).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len()), (1, 0));
    check_number_row(&rows[0], window(2), 60, &windows[2]);
    assert_eq!(core.open_windows(), 1, "the hour");

    // flush_hours writes the open hour long before it closes.
    let batch = core.take_batch_at(closes(window(2)), true, true).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len()), (0, 1));
    check_number_row(&hours[0], HOUR0, 3600, &all);
    assert_eq!(core.open_windows(), 0);
    assert!(core.take_batch_at(i64::MAX, true, false).is_none());
}

#[test]
fn shutdown_writes_the_windows_then_the_hours_in_a_batch_of_their_own() {
    let core = core();
    let windows = three_windows();
    let all: Vec<(i64, f64)> = windows.concat();
    ingest(&core, vec![gauge_of(&all)]);
    // A clock before every window: flush_all writes them all, and only them.
    let batch = core.take_batch_at(window(0), true, false).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len()), (3, 0));
    assert_eq!(batch.points, all.len() as u64);
    for (k, (row, points)) in rows.iter().zip(&windows).enumerate() {
        check_number_row(row, window(k as i64), 60, points);
    }
    assert_eq!(core.oldest_open_window_start_ns(), None);
    assert_eq!(core.open_windows(), 1, "the hour");

    let batch = core.take_batch_at(window(0), true, true).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len(), batch.points), (0, 1, 0));
    check_number_row(&hours[0], HOUR0, 3600, &all);
    assert_eq!(core.open_windows(), 0);
}

#[test]
fn a_crash_between_the_shutdown_batches_rebuilds_the_hour_and_no_window() {
    let windows = three_windows();
    let all: Vec<(i64, f64)> = windows.concat();
    let bytes = request(vec![gauge_of(&all)]);
    let core = core();
    core.ingest_seq(&bytes, NOW, Some(7)).unwrap();
    let windows_batch = core.take_batch_at(window(0), true, false).unwrap();
    assert_eq!(rollups(&windows_batch).0.len(), 3);
    assert_eq!(
        windows_batch.open_from_seq, 7,
        "the open hour still needs the record"
    );

    // The checkpoint of that batch: every window written, and the hours closed by its time.
    let restarted = self::core();
    let filter = ReplayFilter {
        closed_at_ns: i64::MAX,
        hours_closed_at_ns: window(0),
        hours_flushed_at_ns: i64::MIN,
        in_hour_flush: false,
        windows_written: true,
        windows_written_by_hour_flush: false,
    };
    restarted
        .replay_rollups("default", &bytes, NOW, 7, &filter)
        .unwrap();
    // The replayed windows wait as parts of their hour, which the next flush takes.
    assert_eq!(restarted.oldest_open_window_start_ns(), None);
    let batch = restarted.take_batch_at(window(0), true, true).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len(), batch.points), (0, 1, 0));
    check_number_row(&hours[0], HOUR0, 3600, &all);

    // After the shutdown's last batch (every hour written too) nothing is rebuilt.
    let after_shutdown = self::core();
    let filter = ReplayFilter {
        hours_closed_at_ns: i64::MAX,
        ..filter
    };
    after_shutdown
        .replay_rollups("default", &bytes, NOW, 7, &filter)
        .unwrap();
    assert_eq!(after_shutdown.open_windows(), 0);
}

/// A restart after a clean shutdown, then a crash: a request the shutdown left in the spool
/// (deferred, with a lower sequence number) reopens a window whose rows the shutdown wrote
/// early for a later request. The crash's checkpoint needs both records, and its flush time
/// says that window is open; only the later request's `windows_written` keeps its points
/// from being written a second time.
#[test]
fn a_window_written_at_shutdown_is_not_replayed_when_an_older_request_reopens_it() {
    let later = [(window(0) + 5 * S, 3.0), (window(0) + 10 * S, 4.0)];
    let older = [(window(0) + 20 * S, 10.0)];
    let later_bytes = request(vec![gauge_of(&later)]);
    let older_bytes = request(vec![gauge_of(&older)]);
    let shutdown_at = window(0) + 30 * S;
    let first = core();
    first.ingest_seq(&later_bytes, NOW, Some(8)).unwrap();
    let windows_batch = first.take_batch_at(shutdown_at, true, false).unwrap();
    check_number_row(&rollups(&windows_batch).0[0], window(0), 60, &later);
    let hours_batch = first.take_batch_at(shutdown_at, true, true).unwrap();
    check_number_row(&rollups(&hours_batch).1[0], HOUR0, 3600, &later);

    // After the restart the older request (7) reopens window 0, and a commit (an hour
    // flush or not) takes its raw points while the window is open. Then the crash.
    let restarted_at = shutdown_at + 10 * S;
    for hour_flush_after_restart in [false, true] {
        let second = core();
        second.ingest_seq(&older_bytes, NOW, Some(7)).unwrap();
        let batch = second
            .take_batch_at(restarted_at, false, hour_flush_after_restart)
            .unwrap();
        assert_eq!((batch.points, batch.open_from_seq), (1, 7));
        assert_eq!(rollups(&batch), (vec![], vec![]));
        let (hours_flushed_at_ns, later_in_hour_flush) = if hour_flush_after_restart {
            (restarted_at, true)
        } else {
            (i64::MAX, true) // the shutdown's hour batch
        };
        let checkpoint = ReplayFilter {
            closed_at_ns: restarted_at,
            hours_closed_at_ns: restarted_at,
            hours_flushed_at_ns,
            in_hour_flush: false,
            windows_written: false,
            windows_written_by_hour_flush: false,
        };

        let third = core();
        let older_filter = ReplayFilter {
            in_hour_flush: hour_flush_after_restart,
            ..checkpoint
        };
        third
            .replay_rollups("default", &older_bytes, NOW, 7, &older_filter)
            .unwrap();
        let later_filter = ReplayFilter {
            in_hour_flush: later_in_hour_flush,
            windows_written: true,
            windows_written_by_hour_flush: true,
            ..checkpoint
        };
        third
            .replay_rollups("default", &later_bytes, NOW, 8, &later_filter)
            .unwrap();
        let batch = third.take_batch_at(closes(window(0)), true, true).unwrap();
        let (rows, hours) = rollups(&batch);
        assert_eq!((rows.len(), hours.len()), (1, 1));
        check_number_row(&rows[0], window(0), 60, &older);
        check_number_row(&hours[0], HOUR0, 3600, &older);
    }
}

/// An hour flush before the shutdown holds only the windows closed by then: when the
/// shutdown is cut short before its hour batch, the rest of the request's hour is rebuilt.
#[test]
fn an_hour_flush_before_a_cut_short_shutdown_leaves_the_later_windows_to_rebuild() {
    let points = [(window(0) + 5 * S, 3.0), (window(2) + 5 * S, 4.0)];
    let bytes = request(vec![gauge_of(&points)]);
    let core = core();
    core.ingest_seq(&bytes, NOW, Some(7)).unwrap();
    let hour_flush_at = closes(window(0));
    let batch = core.take_batch_at(hour_flush_at, false, true).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len()), (1, 1));
    check_number_row(&hours[0], HOUR0, 3600, &points[..1]);
    let shutdown_at = hour_flush_at + S;
    let batch = core.take_batch_at(shutdown_at, true, false).unwrap();
    check_number_row(&rollups(&batch).0[0], window(2), 60, &points[1..]);

    // The shutdown's hour batch never commits.
    let restarted = self::core();
    let filter = ReplayFilter {
        closed_at_ns: i64::MAX,
        hours_closed_at_ns: shutdown_at,
        hours_flushed_at_ns: hour_flush_at,
        in_hour_flush: true,
        windows_written: true,
        windows_written_by_hour_flush: false,
    };
    restarted
        .replay_rollups("default", &bytes, NOW, 7, &filter)
        .unwrap();
    let batch = restarted.take_batch_at(shutdown_at, true, true).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len()), (0, 1));
    check_number_row(&hours[0], HOUR0, 3600, &points[1..]);
}

/// Two shutdowns cut short before their hour batches, with the restarted daemon's hour
/// flush between them. The second shutdown names the later request among the records whose
/// windows it wrote, but only the set as of the hour flush says that flush holds its whole
/// share of the hour; the older request's share waited in a window then, and is rebuilt.
#[test]
fn a_second_shutdown_cut_short_rebuilds_each_request_s_share_of_the_hour_once() {
    let later = [(window(0) + 5 * S, 3.0)];
    let older = [(window(0) + 20 * S, 10.0)];
    let later_bytes = request(vec![gauge_of(&later)]);
    let older_bytes = request(vec![gauge_of(&older)]);
    let first_shutdown = window(0) + 30 * S;
    let hour_flush = first_shutdown + 10 * S;
    let second_shutdown = hour_flush + 10 * S;

    let first = core();
    first.ingest_seq(&later_bytes, NOW, Some(8)).unwrap();
    let batch = first.take_batch_at(first_shutdown, true, false).unwrap();
    check_number_row(&rollups(&batch).0[0], window(0), 60, &later);

    // Restart: the later request's hour is rebuilt, the older one (deferred) ingested; the
    // first batch is an hour flush, which takes the later one's share of the hour.
    let second = core();
    let after_first = ReplayFilter {
        closed_at_ns: i64::MAX,
        hours_closed_at_ns: first_shutdown,
        hours_flushed_at_ns: i64::MIN,
        in_hour_flush: false,
        windows_written: true,
        windows_written_by_hour_flush: false,
    };
    second
        .replay_rollups("default", &later_bytes, NOW, 8, &after_first)
        .unwrap();
    second.ingest_seq(&older_bytes, NOW, Some(7)).unwrap();
    let batch = second.take_batch_at(hour_flush, false, true).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((batch.points, rows.len(), hours.len()), (1, 0, 1));
    check_number_row(&hours[0], HOUR0, 3600, &later);
    let batch = second.take_batch_at(second_shutdown, true, false).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len()), (1, 0));
    check_number_row(&rows[0], window(0), 60, &older);

    // The second shutdown's checkpoint: both records' windows written, only the later
    // one's by the hour flush, which covered both.
    let third = core();
    let after_second = ReplayFilter {
        hours_closed_at_ns: second_shutdown,
        hours_flushed_at_ns: hour_flush,
        in_hour_flush: true,
        ..after_first
    };
    third
        .replay_rollups("default", &older_bytes, NOW, 7, &after_second)
        .unwrap();
    let later_filter = ReplayFilter {
        windows_written_by_hour_flush: true,
        ..after_second
    };
    third
        .replay_rollups("default", &later_bytes, NOW, 8, &later_filter)
        .unwrap();
    let batch = third.take_batch_at(second_shutdown, true, true).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len()), (0, 1));
    check_number_row(&hours[0], HOUR0, 3600, &older);
}

#[test]
fn flush_all_writes_windows_that_are_still_open() {
    let core = core();
    let windows = three_windows();
    ingest(&core, vec![gauge_of(&windows.concat())]);
    // A clock before every window: only flush_all writes them.
    let batch = core.take_batch_at(window(0), true, true).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len()), (3, 1));
    for (k, (row, points)) in rows.iter().zip(&windows).enumerate() {
        check_number_row(row, window(k as i64), 60, points);
    }
    check_number_row(&hours[0], HOUR0, 3600, &windows.concat());
    assert_eq!(core.open_windows(), 0);
}

#[test]
fn oldest_open_window_is_the_earliest_start_of_any_shard() {
    let core = core();
    assert_eq!(core.oldest_open_window_start_ns(), None);
    // Several series, so that the windows spread over several shards.
    let metrics = (0..8)
        .map(|k| gauge(&format!("g{k}"), vec![at(window(2 + k % 3) + S, 1.0)]))
        .collect();
    ingest(&core, metrics);
    assert_eq!(core.oldest_open_window_start_ns(), Some(window(2)));
    // Closing window 2 leaves window 3 the oldest; open hours never count.
    core.take_batch_at(closes(window(2)), false, false).unwrap();
    assert_eq!(core.oldest_open_window_start_ns(), Some(window(3)));
    core.take_batch_at(closes(window(4)), false, false).unwrap();
    assert!(core.open_windows() > 0, "the hour is still open");
    assert_eq!(core.oldest_open_window_start_ns(), None);
}

#[test]
fn hour_rows_merge_the_windows_of_one_hour() {
    let core = core();
    // Windows 0, 1 and 59 of HOUR0, and one point of the next hour.
    let points = vec![
        (window(0) + S, 2.0),
        (window(0) + 2 * S, 4.5),
        (window(1) + 3 * S, -8.0),
        (window(59) + 59 * S, 16.0),
        (window(59), 0.5),
        (window(60) + 5 * S, 1000.0),
    ];
    let hour0 = &points[..5];
    ingest(&core, vec![gauge_of(&points)]);

    let hour_closes = HOUR0 + HOUR_NS + LATENESS;
    assert_eq!(hour_closes, closes(window(59)));
    let batch = core.take_batch_at(hour_closes - 1, false, false).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len()), (2, 0));
    check_number_row(&rows[0], window(0), 60, &hour0[..2]);
    check_number_row(&rows[1], window(1), 60, &hour0[2..3]);

    let batch = core.take_batch_at(hour_closes, false, false).unwrap();
    let (rows, hours) = rollups(&batch);
    assert_eq!((rows.len(), hours.len()), (1, 1));
    check_number_row(&rows[0], window(59), 60, &hour0[3..]);
    let hour = &hours[0];
    check_number_row(hour, HOUR0, 3600, hour0);
    assert_eq!(hour.series, rows[0].series);
    assert_eq!(hour.digest().count(), 5);
    // The next hour's window and hour are still open.
    assert_eq!(core.open_windows(), 1);

    let batch = core.take_batch_at(hour_closes, true, true).unwrap();
    let (rows, hours) = rollups(&batch);
    check_number_row(&rows[0], window(60), 60, &points[5..]);
    check_number_row(&hours[0], HOUR0 + HOUR_NS, 3600, &points[5..]);
}

#[test]
fn a_late_point_makes_a_second_partial_row() {
    let core = core();
    let on_time = [(window(3) + 10 * S, 1.5), (window(3) + 11 * S, 2.5)];
    let late = [(window(3) + 5 * S, 7.0)];
    ingest(&core, vec![gauge_of(&on_time)]);
    let now = HOUR0 + HOUR_NS + LATENESS;
    let (rows, hours) = rollups(&core.take_batch_at(now, false, false).unwrap());
    check_number_row(&rows[0], window(3), 60, &on_time);
    check_number_row(&hours[0], HOUR0, 3600, &on_time);
    assert_eq!(core.open_windows(), 0);

    ingest(&core, vec![gauge_of(&late)]);
    assert_eq!(core.open_windows(), 1);
    let (rows, hours) = rollups(&core.take_batch_at(now + 1, false, false).unwrap());
    assert_eq!((rows.len(), hours.len()), (1, 1));
    check_number_row(&rows[0], window(3), 60, &late);
    check_number_row(&hours[0], HOUR0, 3600, &late);
}

#[test]
fn counter_rows_keep_the_epoch_first_and_last_value() {
    let core = core();
    let start = HOUR0 - 1000 * S;
    let restart = window(1) + 30 * S;
    // Out of order within the epoch, then a drop with the same start (a reset), then a new
    // start time whose first value is lower again.
    let points = vec![
        started(start, window(0) + 25 * S, 30.0),
        started(start, window(0) + 5 * S, 10.0),
        started(start, window(0) + 15 * S, 20.0),
        started(start, window(1) + 5 * S, 40.0),
        started(start, window(1) + 15 * S, 3.0),
        started(start, window(1) + 25 * S, 7.0),
        started(restart, window(1) + 35 * S, 1.0),
    ];
    ingest(&core, vec![sum("c", CUMULATIVE, true, points)]);
    let (rows, hours) = rollups(
        &core
            .take_batch_at(HOUR0 + HOUR_NS + LATENESS, false, false)
            .unwrap(),
    );

    struct Case {
        start: i64,
        epoch: i64,
        /// (time, value) of the epoch's points in this window, time-sorted.
        points: &'static [(i64, f64)],
    }
    let w0 = window(0);
    let w1 = window(1);
    let cases = [
        Case {
            start: w0,
            epoch: start,
            points: &[(5, 10.0), (15, 20.0), (25, 30.0)],
        },
        Case {
            start: w1,
            epoch: start,
            points: &[(5, 40.0)],
        },
        Case {
            start: w1,
            epoch: w1 + 15 * S,
            points: &[(15, 3.0), (25, 7.0)],
        },
        Case {
            start: w1,
            epoch: restart,
            points: &[(35, 1.0)],
        },
    ];
    assert_eq!(rows.len(), cases.len(), "{rows:#?}");
    for (row, case) in rows.iter().zip(&cases) {
        let first = case.points[0];
        let last = case.points[case.points.len() - 1];
        let n = case.points.len() as i64;
        assert_eq!(row.start, us(case.start));
        assert_eq!(row.epoch, Some(us(case.epoch)), "{row:?}");
        assert_eq!((row.points, row.count), (n, n));
        assert_eq!(row.sum, Some(case.points.iter().map(|p| p.1).sum()));
        assert_eq!((row.min, row.max), (Some(first.1), Some(last.1)));
        assert_eq!(
            (row.first_time, row.first_value),
            (us(case.start + first.0 * S), Some(first.1))
        );
        assert_eq!(
            (row.last_time, row.last_value),
            (us(case.start + last.0 * S), Some(last.1))
        );
        assert_eq!(row.digest, None);
        assert_eq!(row.quantiles, [None; 5]);
    }
    // One hour row per epoch; the epoch `start` spans two windows.
    assert_eq!(hours.len(), 3);
    let h = &hours[0];
    assert_eq!((h.start, h.epoch), (us(HOUR0), Some(us(start))));
    assert_eq!((h.points, h.count, h.sum), (4, 4, Some(100.0)));
    assert_eq!((h.min, h.max), (Some(10.0), Some(40.0)));
    assert_eq!(
        (h.first_time, h.first_value, h.last_time, h.last_value),
        (us(w0 + 5 * S), Some(10.0), us(w1 + 5 * S), Some(40.0))
    );
    assert_eq!(h.digest, None);
    assert_eq!(
        hours[1..].iter().map(|h| h.epoch).collect::<Vec<_>>(),
        vec![Some(us(w1 + 15 * S)), Some(us(restart))]
    );
}

#[test]
fn counter_without_start_time_gets_an_epoch_only_from_a_reset() {
    let core = core();
    let points = vec![
        at(window(0) + S, 5.0),
        at(window(0) + 2 * S, 6.0),
        at(window(0) + 3 * S, 2.0),
    ];
    ingest(&core, vec![sum("c", CUMULATIVE, true, points)]);
    let (rows, _) = rollups(&core.take_batch_at(window(0), true, true).unwrap());
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.epoch, r.count, r.min, r.max))
        .collect();
    assert_eq!(
        got,
        vec![
            (None, 2, Some(5.0), Some(6.0)),
            (Some(us(window(0) + 3 * S)), 1, Some(2.0), Some(2.0)),
        ]
    );
}

#[test]
fn counter_point_older_than_a_reset_keeps_the_old_epoch() {
    let core = core();
    let start = HOUR0 - 1000 * S;
    let w = window(0);
    ingest(
        &core,
        vec![sum(
            "c",
            CUMULATIVE,
            true,
            vec![
                started(start, w + 10 * S, 100.0),
                started(start, w + 30 * S, 5.0),
            ],
        )],
    );
    // A late point between the two: still before the reset, so in the epoch `start`.
    ingest(
        &core,
        vec![sum(
            "c",
            CUMULATIVE,
            true,
            vec![started(start, w + 20 * S, 150.0)],
        )],
    );
    let (rows, _) = rollups(&core.take_batch_at(w, true, true).unwrap());
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.epoch, r.count, r.min, r.max))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(us(start)), 2, Some(100.0), Some(150.0)),
            (Some(us(w + 30 * S)), 1, Some(5.0), Some(5.0)),
        ]
    );
}

#[test]
fn non_counter_sums_get_a_digest_and_no_epoch() {
    let start = HOUR0 - 1000 * S;
    let points: Vec<(i64, f64)> = vec![
        (window(0) + 3 * S, 9.0),
        (window(0) + S, 1.0),
        (window(0) + 2 * S, -4.0),
    ];
    let numbers =
        || -> Vec<NumberDataPoint> { points.iter().map(|&(t, v)| started(start, t, v)).collect() };
    for (temporality, monotonic) in [(CUMULATIVE, false), (DELTA, true), (DELTA, false)] {
        let core = core();
        ingest(&core, vec![sum("s", temporality, monotonic, numbers())]);
        let (rows, hours) = rollups(&core.take_batch_at(window(0), true, true).unwrap());
        assert_eq!(rows.len(), 1, "{temporality} {monotonic}");
        check_number_row(&rows[0], window(0), 60, &points);
        check_number_row(&hours[0], HOUR0, 3600, &points);
    }
}

fn hist(time: i64, bounds: &[f64], counts: &[u64]) -> HistogramDataPoint {
    histogram_point(time as u64, bounds.to_vec(), counts.to_vec())
}

fn by_bounds(rows: &[Rollup], bounds: &[f64]) -> Rollup {
    let found: Vec<&Rollup> = rows
        .iter()
        .filter(|r| r.bounds.as_deref() == Some(bounds))
        .collect();
    assert_eq!(found.len(), 1, "{bounds:?} in {rows:#?}");
    found[0].clone()
}

#[test]
fn delta_histograms_add_bucket_counts_per_layout() {
    let core = core();
    let w = window(4);
    let mut a = hist(w + 10 * S, &[1.0, 5.0], &[1, 2, 3]);
    a.min = Some(0.5);
    a.max = Some(7.0);
    let mut b = hist(w + 5 * S, &[1.0, 5.0], &[0, 0, 4]);
    b.min = Some(2.0);
    b.max = Some(9.0);
    let other = hist(w + 20 * S, &[1.0, 2.0, 5.0], &[1, 1, 1, 1]);
    ingest(&core, vec![histogram("h", DELTA, vec![a, other])]);
    ingest(&core, vec![histogram("h", DELTA, vec![b])]);
    let (rows, hours) = rollups(&core.take_batch_at(closes(w), false, false).unwrap());
    assert_eq!((rows.len(), hours.len()), (2, 0));
    assert_eq!(rows[0].series, rows[1].series);

    let r = by_bounds(&rows, &[1.0, 5.0]);
    assert_eq!((r.start, r.epoch), (us(w), None));
    assert_eq!((r.points, r.count, r.sum), (2, 10, Some(21.0)));
    assert_eq!((r.min, r.max), (Some(0.5), Some(9.0)));
    assert_eq!(r.bucket_counts, Some(vec![1, 2, 7]));
    assert_eq!(
        (r.first_time, r.first_value, r.last_time, r.last_value),
        (us(w + 5 * S), None, us(w + 10 * S), None)
    );
    assert_eq!(r.digest, None);
    // Rank 5 of 10 is the 2nd of 7 values in (5, max 9]: 5 + 4 · 2/7.
    assert_eq!(r.p50(), Some(5.0 + 4.0 * (2.0 / 7.0)));
    for (i, q) in PRECOMPUTED_QUANTILES.into_iter().enumerate() {
        assert_eq!(
            r.quantiles[i],
            quantile(&[1.0, 5.0], &[1, 2, 7], q, 0.5, 9.0),
            "q = {q}"
        );
    }
    assert_eq!((r.exp_scale, r.summary_quantiles.clone()), (None, None));

    let r = by_bounds(&rows, &[1.0, 2.0, 5.0]);
    assert_eq!((r.points, r.count), (1, 4));
    assert_eq!(r.bucket_counts, Some(vec![1, 1, 1, 1]));
    assert_eq!((r.min, r.max), (None, None));
    // Rank 2 of 4: the top of bucket (1, 2].
    assert_eq!(r.p50(), Some(2.0));

    // The hour adds the same way, per layout.
    let (_, hours) = rollups(&core.take_batch_at(closes(w), true, true).unwrap());
    assert_eq!(hours.len(), 2);
    let h = by_bounds(&hours, &[1.0, 5.0]);
    assert_eq!(
        (h.count, h.bucket_counts.clone()),
        (10, Some(vec![1, 2, 7]))
    );
    assert_eq!(h.p50(), quantile(&[1.0, 5.0], &[1, 2, 7], 0.5, 0.5, 9.0));
}

#[test]
fn cumulative_histograms_keep_the_newest_state() {
    let start = HOUR0 - 1000 * S;
    let w = window(7);
    let point = |t: i64, counts: &[u64], min: f64, max: f64| {
        let mut p = hist(w + t * S, &[1.0, 5.0], counts);
        p.start_time_unix_nano = start as u64;
        p.min = Some(min);
        p.max = Some(max);
        p
    };
    let old = point(10, &[1, 0, 0], 0.5, 0.5);
    let new = point(30, &[1, 1, 1], 0.5, 6.0);
    let middle = point(20, &[1, 1, 0], 0.5, 3.0);
    // Arrival orders, in one or several requests: the row is the same.
    let orders: [Vec<Vec<HistogramDataPoint>>; 4] = [
        vec![vec![old.clone(), middle.clone(), new.clone()]],
        vec![vec![new.clone(), middle.clone(), old.clone()]],
        vec![vec![new.clone()], vec![old.clone()], vec![middle.clone()]],
        vec![vec![middle.clone(), new.clone()], vec![old.clone()]],
    ];
    for (i, requests) in orders.into_iter().enumerate() {
        let core = core();
        for points in requests {
            ingest(&core, vec![histogram("h", CUMULATIVE, points)]);
        }
        let (rows, hours) = rollups(&core.take_batch_at(w, true, true).unwrap());
        for r in [&rows[0], &hours[0]] {
            assert_eq!(r.epoch, Some(us(start)), "order {i}");
            assert_eq!((r.points, r.count, r.sum), (3, 3, Some(10.5)), "order {i}");
            assert_eq!((r.min, r.max), (Some(0.5), Some(6.0)), "order {i}");
            assert_eq!(r.bucket_counts, Some(vec![1, 1, 1]), "order {i}");
            assert_eq!(r.bounds, Some(vec![1.0, 5.0]));
            assert_eq!(
                (r.first_time, r.last_time),
                (us(w + 10 * S), us(w + 30 * S))
            );
            assert_eq!(r.quantiles, [None; 5], "a cumulative row has no quantiles");
        }
    }
}

#[test]
fn cumulative_histograms_of_two_layouts_or_epochs_are_separate_rows() {
    let core = core();
    let w = window(7);
    let with_start = |start: i64, t: i64, bounds: &[f64], counts: &[u64]| {
        let mut p = hist(w + t * S, bounds, counts);
        p.start_time_unix_nano = start as u64;
        p
    };
    let e1 = HOUR0 - 1000 * S;
    let e2 = w + 15 * S;
    ingest(
        &core,
        vec![histogram(
            "h",
            CUMULATIVE,
            vec![
                with_start(e1, 10, &[1.0], &[4, 5]),
                with_start(e1, 11, &[2.0], &[1, 1]),
                with_start(e2, 20, &[1.0], &[0, 1]),
            ],
        )],
    );
    let (rows, _) = rollups(&core.take_batch_at(w, true, true).unwrap());
    let mut got: Vec<_> = rows
        .iter()
        .map(|r| (r.epoch, r.bounds.clone(), r.bucket_counts.clone()))
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        got,
        vec![
            (Some(us(e1)), Some(vec![1.0]), Some(vec![4, 5])),
            (Some(us(e1)), Some(vec![2.0]), Some(vec![1, 1])),
            (Some(us(e2)), Some(vec![1.0]), Some(vec![0, 1])),
        ]
    );
}

fn exp(scale: i32, zero: u64, positive: (i32, &[u64]), negative: (i32, &[u64])) -> ExpBuckets {
    ExpBuckets {
        scale,
        zero_count: zero,
        positive: BucketRange {
            offset: positive.0,
            counts: positive.1.to_vec(),
        },
        negative: BucketRange {
            offset: negative.0,
            counts: negative.1.to_vec(),
        },
    }
}

/// Bucket index → count of a range brought down to `scale` from `from`, computed bucket by
/// bucket (`i >> d`).
fn downscaled(range: &BucketRange, from: i32, scale: i32) -> BTreeMap<i32, u64> {
    let mut out = BTreeMap::new();
    for (k, &c) in range.counts.iter().enumerate() {
        *out.entry((range.offset + k as i32) >> (from - scale))
            .or_insert(0) += c;
    }
    out
}

fn as_map(range: &BucketRange) -> BTreeMap<i32, u64> {
    downscaled(range, 0, 0)
        .into_iter()
        .filter(|&(_, c)| c > 0)
        .collect()
}

fn add_maps(mut a: BTreeMap<i32, u64>, b: BTreeMap<i32, u64>) -> BTreeMap<i32, u64> {
    b.into_iter()
        .for_each(|(i, c)| *a.entry(i).or_insert(0) += c);
    a.into_iter().filter(|&(_, c)| c > 0).collect()
}

#[test]
fn exp_merge_at_different_scales_downscales_then_adds() {
    struct Case {
        a: ExpBuckets,
        b: ExpBuckets,
        scale: i32,
        zero: u64,
        positive: (i32, Vec<u64>),
        negative: (i32, Vec<u64>),
    }
    let cases = [
        // Positive 5..=12 at scale 3 into scale 1: 5,6,7 → 1; 8..=11 → 2; 12 → 3.
        Case {
            a: exp(3, 1, (5, &[1, 2, 3, 4, 5, 6, 7, 8]), (0, &[])),
            b: exp(1, 2, (1, &[10, 20]), (0, &[])),
            scale: 1,
            zero: 3,
            positive: (1, vec![16, 42, 8]),
            negative: (0, vec![]),
        },
        // Negative offsets shift arithmetically (floor): -5 → -3, -4,-3 → -2, -2,-1 → -1, 0 → 0.
        Case {
            a: exp(2, 0, (-5, &[1, 1, 1, 1, 1, 1]), (-5, &[1, 2, 3, 4, 5, 6])),
            b: exp(1, 0, (0, &[]), (0, &[])),
            scale: 1,
            zero: 0,
            positive: (-3, vec![1, 2, 2, 1]),
            negative: (-3, vec![1, 5, 9, 6]),
        },
        // Disjoint ranges with a gap, the coarser one first.
        Case {
            a: exp(0, 0, (-10, &[1]), (-1, &[2])),
            b: exp(2, 0, (8, &[1, 1, 1, 1, 1]), (-8, &[7])),
            scale: 0,
            zero: 0,
            positive: (-10, {
                let mut v = vec![0; 13];
                v[0] = 1;
                v[12] = 4; // 8..=11 → 2
                v.push(1); // 12 → 3
                v
            }),
            negative: (-2, vec![7, 2]),
        },
    ];
    for (n, case) in cases.iter().enumerate() {
        for (x, y) in [(&case.a, &case.b), (&case.b, &case.a)] {
            let mut merged = x.clone();
            merged.merge(y);
            assert_eq!(merged.scale, case.scale, "case {n}");
            assert_eq!(merged.zero_count, case.zero, "case {n}");
            assert_eq!(
                (merged.positive.offset, merged.positive.counts.clone()),
                case.positive,
                "case {n}"
            );
            assert_eq!(
                (merged.negative.offset, merged.negative.counts.clone()),
                case.negative,
                "case {n}"
            );
            // The same as downscaling each bucket index and adding.
            for (got, ra, rb) in [
                (&merged.positive, &x.positive, &y.positive),
                (&merged.negative, &x.negative, &y.negative),
            ] {
                let want = add_maps(
                    downscaled(ra, x.scale, case.scale),
                    downscaled(rb, y.scale, case.scale),
                );
                assert_eq!(as_map(got), want, "case {n}");
            }
            // Downscaling then merging at one scale gives the same.
            let (mut dx, mut dy) = (x.clone(), y.clone());
            dx.downscale((x.scale - case.scale) as u32);
            dy.downscale((y.scale - case.scale) as u32);
            dx.merge(&dy);
            assert_eq!(dx, merged, "case {n}");
        }
    }
}

#[test]
fn exp_merge_lowers_the_scale_to_stay_under_the_bucket_cap() {
    struct Case {
        a: ExpBuckets,
        b: ExpBuckets,
        scale: i32,
        positive_offset: i32,
        positive_len: usize,
        negative_len: usize,
    }
    let ones = |n: usize| vec![1u64; n];
    let (c200, c320, c1) = (ones(200), ones(320), ones(1));
    let cases = [
        // 400 buckets 0..400 → one step: 0..200.
        Case {
            a: exp(5, 0, (0, &c200), (0, &[])),
            b: exp(5, 0, (200, &c200), (0, &[])),
            scale: 4,
            positive_offset: 0,
            positive_len: 200,
            negative_len: 0,
        },
        // Exactly 320 buckets: no step.
        Case {
            a: exp(5, 0, (0, &c200), (0, &[])),
            b: exp(5, 0, (319, &c1), (0, &[])),
            scale: 5,
            positive_offset: 0,
            positive_len: 320,
            negative_len: 0,
        },
        // Indexes 0 and 1000: 1001 → 501 → 251 buckets, two steps.
        Case {
            a: exp(5, 0, (0, &c1), (0, &[])),
            b: exp(5, 0, (1000, &c1), (0, &[])),
            scale: 3,
            positive_offset: 0,
            positive_len: 251,
            negative_len: 0,
        },
        // The negative range alone needs a step; the positive one follows it.
        Case {
            a: exp(5, 0, (7, &c1), (-400, &c320)),
            b: exp(5, 0, (8, &c1), (0, &c1)),
            scale: 4,
            positive_offset: 3,
            positive_len: 2,
            negative_len: 201,
        },
        // At different scales the cap applies after bringing both to the coarser one.
        Case {
            a: exp(6, 0, (0, &c320), (0, &[])),
            b: exp(5, 0, (160, &c320), (0, &[])),
            scale: 4,
            positive_offset: 0,
            positive_len: 240,
            negative_len: 0,
        },
    ];
    for (n, case) in cases.iter().enumerate() {
        let mut merged = case.a.clone();
        merged.merge(&case.b);
        assert_eq!(merged.scale, case.scale, "case {n}");
        assert_eq!(merged.positive.offset, case.positive_offset, "case {n}");
        assert_eq!(merged.positive.counts.len(), case.positive_len, "case {n}");
        assert_eq!(merged.negative.counts.len(), case.negative_len, "case {n}");
        assert!(merged.positive.counts.len() <= 320 && merged.negative.counts.len() <= 320);
        for (got, ra, rb) in [
            (&merged.positive, &case.a.positive, &case.b.positive),
            (&merged.negative, &case.a.negative, &case.b.negative),
        ] {
            let want = add_maps(
                downscaled(ra, case.a.scale, case.scale),
                downscaled(rb, case.b.scale, case.scale),
            );
            assert_eq!(as_map(got), want, "case {n}");
        }
    }
}

#[test]
fn exp_to_explicit_bounds_increase_and_counts_are_kept() {
    // Scale 0 (base 2): negative 0..=1 are [-2,-1) and [-4,-2); positive 1..=2 are (2,4] and
    // (4,8]. Empty buckets close the lower edges at -4 and 2.
    let e = exp(0, 5, (1, &[3, 4]), (0, &[1, 2]));
    let (bounds, counts) = e.to_explicit();
    assert_eq!(bounds, vec![-4.0, -2.0, -1.0, 0.0, 2.0, 4.0, 8.0]);
    assert_eq!(counts, vec![0, 2, 1, 5, 0, 3, 4, 0]);

    let cases = [
        exp(0, 5, (1, &[3, 4]), (0, &[1, 2])),
        exp(3, 0, (-20, &[1, 0, 2, 7, 1]), (0, &[])),
        exp(-2, 1, (0, &[1, 1]), (-3, &[4, 0, 1])),
        exp(5, 0, (100, &[9; 40]), (-50, &[2; 30])),
        exp(1, 9, (0, &[]), (0, &[])),
    ];
    for e in &cases {
        let (bounds, counts) = e.to_explicit();
        assert_eq!(counts.len(), bounds.len() + 1, "{e:?}");
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        assert!(bounds.iter().all(|b| b.is_finite()));
        let total = e.zero_count
            + e.positive.counts.iter().sum::<u64>()
            + e.negative.counts.iter().sum::<u64>();
        assert_eq!(counts.iter().sum::<u64>(), total, "{e:?}");
        assert_eq!(counts.last(), Some(&0), "empty overflow bucket");
        // After the zero bucket: the first positive bucket's lower edge base^offset, then each
        // positive bucket's upper bound base^(index + 1).
        let base = 2f64.powf(2f64.powi(-e.scale));
        let negatives = e.negative.counts.len();
        let zero_at = negatives + usize::from(negatives > 0);
        assert_eq!(bounds[zero_at], 0.0);
        let positive = &bounds[zero_at + 1..];
        if let Some(first) = positive.first() {
            let want = base.powi(e.positive.offset);
            assert!((first / want - 1.0).abs() < 1e-12, "{first} vs {want}");
        }
        for (k, b) in positive.iter().skip(1).enumerate() {
            let want = base.powi(e.positive.offset + k as i32 + 1);
            assert!((b / want - 1.0).abs() < 1e-12, "{b} vs {want}");
        }
    }
}

#[test]
fn histogram_quantile_known_answers() {
    let tens: Vec<f64> = (1..=10).map(|i| i as f64 * 10.0).collect();
    let mut uniform = vec![10u64; 10];
    uniform.push(0);
    let inf = f64::INFINITY;
    struct Case<'a> {
        bounds: &'a [f64],
        counts: &'a [u64],
        q: f64,
        min: f64,
        max: f64,
        want: Option<f64>,
    }
    fn case<'a>(
        bounds: &'a [f64],
        counts: &'a [u64],
        q: f64,
        min: f64,
        max: f64,
        want: Option<f64>,
    ) -> Case<'a> {
        Case {
            bounds,
            counts,
            q,
            min,
            max,
            want,
        }
    }
    let cases = [
        // 10 values per bucket up to 100: exact interpolation inside the buckets.
        case(&tens, &uniform, 0.5, 0.0, 100.0, Some(50.0)),
        case(&tens, &uniform, 0.99, 0.0, 100.0, Some(99.0)),
        case(&tens, &uniform, 0.25, 0.0, 100.0, Some(25.0)),
        case(&tens, &uniform, 1.0, 0.0, 100.0, Some(100.0)),
        case(&tens, &uniform, 0.0, 0.0, 100.0, Some(0.0)),
        // The first bucket is closed by min (or by its own bound when min is unknown).
        case(&tens, &uniform, 0.05, 0.0, 100.0, Some(5.0)),
        case(&tens, &uniform, 0.05, 6.0, 100.0, Some(8.0)),
        case(&tens, &uniform, 0.05, inf, -inf, Some(10.0)),
        // A tighter max also clamps the last bucket holding values.
        case(&tens, &uniform, 0.99, 0.0, 95.0, Some(94.5)),
        // The overflow bucket is closed by max, or is the last bound when max is unknown.
        case(&[1.0, 2.0], &[0, 2, 2], 0.75, inf, 4.0, Some(3.0)),
        case(&[1.0, 2.0], &[0, 2, 2], 0.75, inf, -inf, Some(2.0)),
        case(&[1.0, 2.0], &[0, 2, 2], 1.0, inf, 10.0, Some(10.0)),
        // Zero buckets are skipped.
        case(&[1.0, 2.0, 3.0], &[0, 4, 0, 0], 1.0, inf, -inf, Some(2.0)),
        case(&[1.0, 2.0, 3.0], &[0, 0, 0, 4], 0.0, inf, 7.0, Some(3.0)),
        // No buckets at all: only min and max.
        case(&[], &[4], 0.5, 2.0, 6.0, Some(4.0)),
        // Empty, malformed or out-of-range queries.
        case(&tens, &[0; 11], 0.5, inf, -inf, None),
        case(&[], &[0], 0.5, inf, -inf, None),
        case(&[1.0], &[1], 0.5, inf, -inf, None),
        case(&tens, &uniform, 1.5, 0.0, 100.0, None),
        case(&tens, &uniform, -0.1, 0.0, 100.0, None),
        case(&tens, &uniform, f64::NAN, 0.0, 100.0, None),
    ];
    for (n, c) in cases.iter().enumerate() {
        assert_eq!(
            quantile(c.bounds, c.counts, c.q, c.min, c.max),
            c.want,
            "case {n}: q = {}",
            c.q
        );
    }
}

fn summary_at(start: i64, time: i64, sum: f64, quantiles: &[(f64, f64)]) -> SummaryDataPoint {
    SummaryDataPoint {
        start_time_unix_nano: start as u64,
        ..summary_point(time as u64, sum, quantiles)
    }
}

#[test]
fn summaries_keep_the_newest_quantiles() {
    let w = window(9);
    let start = HOUR0 - 1000 * S;
    let newest = summary_at(
        start,
        w + 30 * S,
        20.0,
        &[(0.0, 1.0), (0.5, 4.0), (0.99, 8.0), (1.0, 9.0)],
    );
    let older = summary_at(start, w + 10 * S, 5.0, &[(0.5, 2.0), (0.9, 3.0)]);
    let middle = summary_at(start, w + 20 * S, 12.0, &[(0.5, 3.0)]);
    let orders: [Vec<Vec<SummaryDataPoint>>; 3] = [
        vec![vec![older.clone(), middle.clone(), newest.clone()]],
        vec![vec![newest.clone(), older.clone(), middle.clone()]],
        vec![vec![middle.clone(), newest.clone()], vec![older.clone()]],
    ];
    for (i, requests) in orders.into_iter().enumerate() {
        let core = core();
        for points in requests {
            ingest(&core, vec![summary("q", points)]);
        }
        let (rows, hours) = rollups(&core.take_batch_at(closes(w), false, false).unwrap());
        assert_eq!((rows.len(), hours.len()), (1, 0));
        let (_, hours) = rollups(&core.take_batch_at(closes(w), true, true).unwrap());
        for r in [&rows[0], &hours[0]] {
            assert_eq!(r.epoch, Some(us(start)), "order {i}");
            assert_eq!((r.points, r.count, r.sum), (3, 7, Some(20.0)), "order {i}");
            assert_eq!((r.min, r.max), (Some(1.0), Some(9.0)), "order {i}");
            assert_eq!(
                (r.first_time, r.first_value, r.last_time, r.last_value),
                (us(w + 10 * S), None, us(w + 30 * S), None)
            );
            assert_eq!(r.quantiles, [Some(4.0), None, None, Some(8.0), None]);
            assert_eq!(r.summary_quantiles, Some(vec![0.0, 0.5, 0.99, 1.0]));
            assert_eq!(r.summary_values, Some(vec![1.0, 4.0, 8.0, 9.0]));
            assert_eq!((r.digest.clone(), r.bounds.clone()), (None, None));
        }
    }
}

#[test]
fn summary_without_start_or_extremes() {
    let core = core();
    let w = window(9);
    ingest(
        &core,
        vec![summary(
            "q",
            vec![summary_at(0, w + S, 3.0, &[(0.5, 2.5), (0.9, 6.0)])],
        )],
    );
    let (rows, _) = rollups(&core.take_batch_at(w, true, true).unwrap());
    let r = &rows[0];
    assert_eq!((r.epoch, r.min, r.max), (None, None, None));
    assert_eq!(r.quantiles, [Some(2.5), Some(6.0), None, None, None]);
}

fn exp_metric(temporality: i32, points: Vec<ExponentialHistogramDataPoint>) -> Metric {
    let mut m = exp_histogram("e", points);
    if let Some(Data::ExponentialHistogram(h)) = &mut m.data {
        h.aggregation_temporality = temporality;
    }
    m
}

#[test]
fn exponential_histograms_merge_in_their_window() {
    let w = window(11);
    // Builder offsets: positive 3, negative -2.
    let a = exp_point((w + 10 * S) as u64, 3, 2, vec![4, 5], vec![1]);
    let b = exp_point((w + 5 * S) as u64, 1, 0, vec![1, 1], vec![]);

    let delta = core();
    ingest(&delta, vec![exp_metric(DELTA, vec![a.clone(), b.clone()])]);
    let (rows, _) = rollups(&delta.take_batch_at(w, true, true).unwrap());
    let r = &rows[0];
    // a at scale 1: positive 3,4 → 0,1 and negative -2 → -1; b adds positive 3 and 4.
    assert_eq!((r.exp_scale, r.exp_zero_count), (Some(1), Some(2)));
    assert_eq!(
        (r.exp_positive_offset, r.exp_positive.clone()),
        (Some(0), Some(vec![4, 5, 0, 1, 1]))
    );
    assert_eq!(
        (r.exp_negative_offset, r.exp_negative.clone()),
        (Some(-1), Some(vec![1]))
    );
    assert_eq!((r.points, r.count, r.epoch), (2, 14, None));
    let merged = exp(1, 2, (0, &[4, 5, 0, 1, 1]), (-1, &[1]));
    let (bounds, counts) = merged.to_explicit();
    for (i, q) in PRECOMPUTED_QUANTILES.into_iter().enumerate() {
        let want = quantile(&bounds, &counts, q, f64::INFINITY, f64::NEG_INFINITY);
        assert_eq!(r.quantiles[i], want, "q = {q}");
        assert!(want.is_some());
    }
    assert_eq!((r.bounds.clone(), r.digest.clone()), (None, None));

    // Cumulative: the newest point's buckets, no quantiles.
    let start = HOUR0 - 1000 * S;
    let core = core();
    let with_start = |mut p: ExponentialHistogramDataPoint| {
        p.start_time_unix_nano = start as u64;
        p
    };
    ingest(
        &core,
        vec![exp_metric(CUMULATIVE, vec![with_start(a), with_start(b)])],
    );
    let (rows, _) = rollups(&core.take_batch_at(w, true, true).unwrap());
    let r = &rows[0];
    assert_eq!((r.epoch, r.points, r.count), (Some(us(start)), 2, 12));
    assert_eq!((r.exp_scale, r.exp_zero_count), (Some(3), Some(2)));
    assert_eq!(
        (r.exp_positive_offset, r.exp_positive.clone()),
        (Some(3), Some(vec![4, 5]))
    );
    assert_eq!(r.quantiles, [None; 5]);
}

#[test]
fn exp_quantiles_stay_inside_the_bucket_holding_the_values() {
    let core = core();
    let w = window(11);
    // Ten values in bucket 3 at scale 3, (2^(3/8), 2^(4/8)]; no min, max or zero count.
    let p = exp_point((w + S) as u64, 3, 0, vec![10], vec![]);
    ingest(&core, vec![exp_metric(DELTA, vec![p])]);
    let (rows, _) = rollups(&core.take_batch_at(w, true, true).unwrap());
    let (lower, upper) = (2f64.powf(3.0 / 8.0), 2f64.sqrt());
    for (i, q) in PRECOMPUTED_QUANTILES.into_iter().enumerate() {
        let v = rows[0].quantiles[i].unwrap();
        assert!(
            lower <= v && v <= upper,
            "q = {q}: {v} outside [{lower}, {upper}]"
        );
    }
}
