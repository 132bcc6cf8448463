//! Crash and replay: a core that restarts from a checkpoint and replays the spool records
//! after it (rollup-only for records whose raw points were committed) writes exactly the
//! rollup rows and points that a core which never stopped writes.

use opentelemetry_proto::tonic::metrics::v1::{Metric, NumberDataPoint};

use super::builder::*;
use super::copy_reader::*;
use crate::ingest::{Batch, MetricsCore};
use crate::windows::{ReplayFilter, NS_PER_SECOND};

const S: i64 = NS_PER_SECOND;
const FLUSH_EVERY: i64 = 10 * S;
const HOURS_FLUSH_EVERY: i64 = 300 * S;
const REQUEST_EVERY: i64 = 3 * S;

/// One spool record: what a request was and when it was ingested.
struct Record {
    seq: u64,
    now_ns: i64,
    bytes: Vec<u8>,
}

/// A small deterministic generator (the tests need no crate for this).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn point(time: i64, v: f64, series: u64) -> NumberDataPoint {
    number(time as u64, v, attrs(&[("k", &series.to_string())]))
}

/// Requests every few seconds over three hours: gauges, a delta sum and a cumulative counter,
/// some points late by up to four minutes (past their window's lateness).
fn records() -> Vec<Record> {
    let mut rng = Lcg(7);
    let start = NOW - 3 * 3_600 * S;
    let mut counter = 0.0;
    (0..(3 * 3_600 * S / REQUEST_EVERY))
        .map(|i| {
            let now_ns = start + i * REQUEST_EVERY;
            let late = |rng: &mut Lcg| {
                if rng.next(10) == 0 {
                    rng.next(240) as i64 * S
                } else {
                    rng.next(3) as i64 * S
                }
            };
            let gauges = (0..4)
                .map(|s| point(now_ns - late(&mut rng), rng.next(1000) as f64, s))
                .collect();
            counter += rng.next(5) as f64;
            let metrics: Vec<Metric> = vec![
                gauge("g", gauges),
                sum(
                    "d",
                    DELTA,
                    true,
                    vec![point(now_ns - late(&mut rng), 1.0, 0)],
                ),
                sum(
                    "c",
                    CUMULATIVE,
                    true,
                    vec![NumberDataPoint {
                        start_time_unix_nano: start as u64,
                        ..point(now_ns, counter, 0)
                    }],
                ),
            ];
            Record {
                seq: i as u64 + 1,
                now_ns,
                bytes: request(metrics),
            }
        })
        .collect()
}

/// What the committed batches wrote, in a comparable form: every point and rollup tuple.
#[derive(Default)]
struct Stored {
    points: u64,
    rollups: Vec<Vec<Field>>,
}

impl Stored {
    fn add(&mut self, batch: &Batch) {
        self.points += batch.points;
        self.rollups.extend(tuples(&batch.rollups_copy));
    }

    fn sorted(mut self) -> (u64, Vec<Vec<Field>>) {
        self.rollups.sort();
        (self.points, self.rollups)
    }
}

/// The checkpoint a writer commits with each batch.
#[derive(Clone, Copy)]
struct Checkpoint {
    committed_through: u64,
    open_from_seq: u64,
    closed_at_ns: i64,
    hours_flushed_at_ns: i64,
    hour_flush_through: u64,
}

/// Runs `records`, flushing on the schedule, into `core`; stops after `stop_after_flushes`
/// flushes (a crash: the records after the last flush stay uncommitted) or runs to the end
/// and flushes everything.
fn run(
    core: &MetricsCore,
    records: &[Record],
    from: usize,
    stored: &mut Stored,
    checkpoint: &mut Checkpoint,
    stop_after_flushes: Option<usize>,
) -> usize {
    let mut next_flush = records[from].now_ns - records[from].now_ns.rem_euclid(FLUSH_EVERY);
    let mut flushes = 0;
    for (i, record) in records.iter().enumerate().skip(from) {
        while next_flush <= record.now_ns {
            let flush_hours = next_flush.rem_euclid(HOURS_FLUSH_EVERY) == 0;
            if let Some(batch) = core.take_batch_at(next_flush, false, flush_hours) {
                stored.add(&batch);
                if let Some(&last) = batch.seqs.iter().max() {
                    checkpoint.committed_through = last;
                }
                checkpoint.open_from_seq = batch.open_from_seq;
                checkpoint.closed_at_ns = next_flush;
                if flush_hours {
                    checkpoint.hours_flushed_at_ns = next_flush;
                    checkpoint.hour_flush_through = checkpoint.committed_through;
                }
            }
            next_flush += FLUSH_EVERY;
            flushes += 1;
            if stop_after_flushes == Some(flushes) {
                return i;
            }
        }
        let out = core
            .ingest_seq(&record.bytes, record.now_ns, Some(record.seq))
            .unwrap();
        assert_eq!(out.rejected_points, 0, "{:?}", out.rejected_by_reason);
    }
    let last = records.last().unwrap().now_ns;
    if let Some(batch) = core.take_batch_at(last + FLUSH_EVERY, true, true) {
        stored.add(&batch);
    }
    records.len()
}

/// A fresh core after a crash: rollup-only replay of the committed records that open
/// aggregates held, then a full ingest of the uncommitted ones.
fn restart(records: &[Record], checkpoint: &Checkpoint, crashed_at: usize) -> MetricsCore {
    let core = core();
    let from_seq = checkpoint
        .open_from_seq
        .min(checkpoint.committed_through + 1);
    for record in records[..crashed_at].iter().filter(|r| r.seq >= from_seq) {
        if record.seq <= checkpoint.committed_through {
            let filter = ReplayFilter {
                closed_at_ns: checkpoint.closed_at_ns,
                hours_closed_at_ns: checkpoint.closed_at_ns,
                hours_flushed_at_ns: checkpoint.hours_flushed_at_ns,
                in_hour_flush: record.seq <= checkpoint.hour_flush_through,
                windows_written: false,
                windows_written_by_hour_flush: false,
            };
            core.replay_rollups("default", &record.bytes, record.now_ns, record.seq, &filter)
                .unwrap();
        } else {
            core.ingest_seq(&record.bytes, record.now_ns, Some(record.seq))
                .unwrap();
        }
    }
    core
}

#[test]
fn a_crash_at_any_flush_writes_every_point_and_rollup_exactly_once() {
    let records = records();
    let fresh = Checkpoint {
        committed_through: 0,
        open_from_seq: u64::MAX,
        closed_at_ns: i64::MIN,
        hours_flushed_at_ns: i64::MIN,
        hour_flush_through: 0,
    };
    let mut reference = Stored::default();
    run(
        &core(),
        &records,
        0,
        &mut reference,
        &mut fresh.clone(),
        None,
    );
    let reference = reference.sorted();
    assert_eq!(reference.0, records.len() as u64 * 6);

    // Crashes at flushes spread over the run: mid-hour, just after an hour flush, after
    // an hour closed, and with late points open.
    for crash_after in [3, 31, 60, 97, 361, 420, 725, 1000] {
        let mut stored = Stored::default();
        let mut checkpoint = fresh;
        let crashed_at = run(
            &core(),
            &records,
            0,
            &mut stored,
            &mut checkpoint,
            Some(crash_after),
        );
        let replayed = restart(&records, &checkpoint, crashed_at);
        run(
            &replayed,
            &records,
            crashed_at,
            &mut stored,
            &mut checkpoint,
            None,
        );
        let (points, rollups) = stored.sorted();
        assert_eq!(points, reference.0, "crash after flush {crash_after}");
        assert_eq!(
            rollups.len(),
            reference.1.len(),
            "crash after flush {crash_after}"
        );
        assert!(rollups == reference.1, "crash after flush {crash_after}");
    }
}
