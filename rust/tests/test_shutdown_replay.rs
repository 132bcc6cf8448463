//! Crashes, clean shutdowns, shutdowns cut short between their two batches, restarts, and
//! requests deferred past them (left in the spool while later ones were stored): however a run
//! is cut, the rollup rows its commits wrote, merged, hold every point exactly once, and the
//! raw points are written once. Each commit's checkpoint is built as the metrics writer builds
//! it (`Checkpoint.after_metrics_batch` in `python/tidegate/checkpoints.py`), and a restart
//! replays the spool as `python/tidegate/replay.py` does.

use std::collections::{BTreeMap, BTreeSet};

use super::builder::*;
use super::copy_reader::*;
use super::random_requests::Rng;
use crate::copy_binary::ns_to_pg_micros;
use crate::ingest::{Batch, MetricsCore};
use crate::windows::{ReplayFilter, HOUR_NS, NS_PER_SECOND};

const S: i64 = NS_PER_SECOND;
const WINDOW: i64 = 60 * S;
/// The flush interval here, and how many of them pass between hour flushes (300 s).
const TICK: i64 = 10 * S;
const HOUR_FLUSH_TICKS: u32 = 30;
const TICKS: i64 = 540;

/// One spool record, and the points it carries.
struct Record {
    seq: u64,
    now_ns: i64,
    bytes: Vec<u8>,
    points: Vec<(i64, f64)>,
}

/// Counts and sums by (window or hour start in PostgreSQL microseconds, width in seconds),
/// over every series.
type Sums = BTreeMap<(i64, i32), (i64, f64)>;

fn add_point(sums: &mut Sums, time_ns: i64, value: f64) {
    for width in [WINDOW, HOUR_NS] {
        let start = time_ns - time_ns.rem_euclid(width);
        let entry = sums
            .entry((ns_to_pg_micros(start), (width / S) as i32))
            .or_default();
        entry.0 += 1;
        entry.1 += value;
    }
}

/// A metrics checkpoint, as the writer keeps it.
#[derive(Clone)]
struct Checkpoint {
    committed: BTreeSet<u64>,
    open_from_seq: u64,
    closed_at_ns: i64,
    hours_closed_at_ns: i64,
    hours_flushed_at_ns: i64,
    hour_flush: BTreeSet<u64>,
    windows_written: BTreeSet<u64>,
    hour_flush_windows_written: BTreeSet<u64>,
}

impl Checkpoint {
    fn fresh() -> Self {
        Checkpoint {
            committed: BTreeSet::new(),
            open_from_seq: u64::MAX,
            closed_at_ns: i64::MIN,
            hours_closed_at_ns: i64::MIN,
            hours_flushed_at_ns: i64::MIN,
            hour_flush: BTreeSet::new(),
            windows_written: BTreeSet::new(),
            hour_flush_windows_written: BTreeSet::new(),
        }
    }

    /// The checkpoint that commits with `batch` (`Checkpoint.after_metrics_batch`).
    fn next(&self, batch: &Batch, now_ns: i64, flush_all: bool, flush_hours: bool) -> Self {
        let closed_at = if flush_all { i64::MAX } else { now_ns };
        let mut committed = self.committed.clone();
        committed.extend(batch.seqs.iter().copied());
        let windows_written = if flush_all {
            committed.clone()
        } else {
            self.windows_written.clone()
        };
        Checkpoint {
            open_from_seq: batch.open_from_seq,
            closed_at_ns: closed_at,
            hours_closed_at_ns: if flush_all && !flush_hours {
                now_ns
            } else {
                closed_at
            },
            hours_flushed_at_ns: if flush_hours {
                closed_at
            } else {
                self.hours_flushed_at_ns
            },
            hour_flush: if flush_hours {
                committed.clone()
            } else {
                self.hour_flush.clone()
            },
            hour_flush_windows_written: if flush_hours {
                windows_written.clone()
            } else {
                self.hour_flush_windows_written.clone()
            },
            windows_written,
            committed,
        }
    }

    fn filter(&self, seq: u64) -> ReplayFilter {
        ReplayFilter {
            closed_at_ns: self.closed_at_ns,
            hours_closed_at_ns: self.hours_closed_at_ns,
            hours_flushed_at_ns: self.hours_flushed_at_ns,
            in_hour_flush: self.hour_flush.contains(&seq),
            windows_written: self.windows_written.contains(&seq),
            windows_written_by_hour_flush: self.hour_flush_windows_written.contains(&seq),
        }
    }

    fn shutdown_cut_short(&self) -> bool {
        self.closed_at_ns == i64::MAX && self.hours_closed_at_ns != i64::MAX
    }
}

/// What PostgreSQL holds (the committed batches) and the daemon that writes to it.
struct Run {
    records: Vec<Record>,
    checkpoint: Checkpoint,
    core: MetricsCore,
    deferred: Vec<usize>,
    ticks_since_hour_flush: u32,
    stored: Sums,
    stored_points: u64,
}

impl Run {
    fn new() -> Self {
        Run {
            records: Vec::new(),
            checkpoint: Checkpoint::fresh(),
            core: core(),
            deferred: Vec::new(),
            ticks_since_hour_flush: 0,
            stored: Sums::new(),
            stored_points: 0,
        }
    }

    fn ingest(&self, i: usize) {
        let r = &self.records[i];
        let out = self
            .core
            .ingest_seq(&r.bytes, r.now_ns, Some(r.seq))
            .unwrap();
        assert_eq!(out.rejected_points, 0, "{:?}", out.rejected_by_reason);
    }

    /// One writer batch; false when there was nothing to write. `commits` false: the daemon
    /// dies before the batch commits.
    fn flush(&mut self, now_ns: i64, flush_all: bool, flush_hours: bool, commits: bool) -> bool {
        if flush_hours {
            self.ticks_since_hour_flush = 0;
        }
        let Some(batch) = self.core.take_batch_at(now_ns, flush_all, flush_hours) else {
            return false;
        };
        if commits {
            self.stored_points += batch.points;
            for t in tuples(&batch.rollups_copy) {
                let entry = self.stored.entry((int8(&t[1]), int4(&t[2]))).or_default();
                entry.0 += int8(&t[5]);
                entry.1 += float8(&t[6]);
            }
            self.checkpoint = self.checkpoint.next(&batch, now_ns, flush_all, flush_hours);
        }
        true
    }

    /// The flush of a tick: every `HOUR_FLUSH_TICKS` it writes the open hours too, and now
    /// and then sooner (as the writer does while the spool is crowded).
    fn tick_flush(&mut self, now_ns: i64, rng: &mut Rng) {
        let flush_hours = self.ticks_since_hour_flush >= HOUR_FLUSH_TICKS || rng.chance(50);
        self.flush(now_ns, false, flush_hours, true);
    }

    /// Shutdown: every open window, then every open hour, in batches of their own; with
    /// `commits` batches committing (a shutdown cut short stops before the hours).
    fn shutdown(&mut self, now_ns: i64, commits: usize) {
        for n in 0.. {
            let only_hours =
                self.core.oldest_open_window_start_ns().is_none() && self.core.open_windows() > 0;
            let flush_hours = self.ticks_since_hour_flush >= HOUR_FLUSH_TICKS || only_hours;
            if !self.flush(now_ns, true, flush_hours, n < commits) || n >= commits {
                return;
            }
        }
    }

    /// A new daemon on the checkpoint: committed records holding open aggregates go back
    /// into them, then every record not committed (the deferred ones among them) is
    /// ingested again.
    fn restart(&mut self) {
        self.core = core();
        self.deferred.clear();
        let cp = &self.checkpoint;
        for r in &self.records {
            if cp.committed.contains(&r.seq) && r.seq >= cp.open_from_seq {
                self.core
                    .replay_rollups("default", &r.bytes, r.now_ns, r.seq, &cp.filter(r.seq))
                    .unwrap();
            }
        }
        for i in 0..self.records.len() {
            if !self.checkpoint.committed.contains(&self.records[i].seq) {
                self.ingest(i);
            }
        }
        self.ticks_since_hour_flush = if self.checkpoint.shutdown_cut_short() {
            HOUR_FLUSH_TICKS
        } else {
            0
        };
    }
}

/// Requests every tick, a few points each (some late by up to four minutes), some of them
/// deferred; a flush every tick; now and then a crash, a clean shutdown or a shutdown cut
/// short, each followed by a restart. At the end everything deferred is ingested and the
/// daemon stops cleanly.
fn run(seed: u64) -> (Sums, Sums, u64, u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut run = Run::new();
    let mut expected = Sums::new();
    let start = NOW - TICKS * TICK;
    for tick in 0..TICKS {
        let now_ns = start + tick * TICK;
        for _ in 0..1 + rng.below(2) {
            let points: Vec<(i64, f64)> = (0..1 + rng.below(3))
                .map(|_| {
                    let late = if rng.chance(10) {
                        rng.below(240)
                    } else {
                        rng.below(3)
                    };
                    (now_ns - late as i64 * S, rng.below(100) as f64)
                })
                .collect();
            let series = rng.below(3).to_string();
            let data = points
                .iter()
                .map(|&(t, v)| number(t as u64, v, attrs(&[("s", &series)])))
                .collect();
            for &(t, v) in &points {
                add_point(&mut expected, t, v);
            }
            run.records.push(Record {
                seq: run.records.len() as u64 + 1,
                now_ns,
                bytes: request(vec![gauge("g", data)]),
                points,
            });
            let i = run.records.len() - 1;
            // Deferred: waits in the spool, and a later request may be ingested first.
            if rng.chance(5) {
                run.deferred.push(i);
            } else {
                run.ingest(i);
            }
        }
        if rng.chance(3) {
            for i in std::mem::take(&mut run.deferred) {
                run.ingest(i);
            }
        }
        run.ticks_since_hour_flush += 1;
        // The event comes before or after the tick's flush: a shutdown may find the hour
        // flush due, and then writes windows and hours in its first batch.
        let event = rng.below(40);
        let event_first = rng.chance(2);
        if !event_first {
            run.tick_flush(now_ns, &mut rng);
        }
        match event {
            0 => run.restart(), // a crash
            1 => {
                run.shutdown(now_ns, usize::MAX); // clean
                run.restart();
            }
            2 => {
                run.shutdown(now_ns, 1); // cut short after its first batch
                run.restart();
            }
            _ => {}
        }
        if event_first {
            run.tick_flush(now_ns, &mut rng);
        }
    }
    for i in std::mem::take(&mut run.deferred) {
        run.ingest(i);
    }
    run.shutdown(start + TICKS * TICK, usize::MAX);
    let points = run.records.iter().map(|r| r.points.len() as u64).sum();
    (run.stored, expected, run.stored_points, points)
}

#[test]
fn however_a_run_is_cut_every_point_is_in_its_rollups_once() {
    for seed in 1..=24 {
        let (stored, expected, stored_points, points) = run(seed);
        assert_eq!(stored_points, points, "seed {seed}: raw points");
        let wrong: Vec<_> = expected
            .iter()
            .filter(|(key, want)| stored.get(key) != Some(want))
            .map(|(key, want)| (key, want, stored.get(key)))
            .collect();
        assert!(
            wrong.is_empty(),
            "seed {seed}: {} of {} rollups differ, first {:?}",
            wrong.len(),
            expected.len(),
            &wrong[..wrong.len().min(3)]
        );
        assert_eq!(stored.len(), expected.len(), "seed {seed}: rollup keys");
    }
}
