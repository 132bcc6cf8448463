//! Admission of staged points under a shard's registry: collisions, the tenant's
//! active-series limit, then the appends to chunks and windows (`ingest`), or the same
//! verdicts without recording anything (`check`).

use std::sync::PoisonError;

use crate::buffer::ChunkBuf;
use crate::buffer::{utc_day, Shard};
use crate::histogram_chunks::{self, HistogramPoint};
use crate::ingest::{lock, shard_of, MetricsCore, SHARDS};
use crate::series::{Admission, IdMap, SeriesKey, SeriesRegistry, SeriesStatus};
use crate::staged::{Payload, StagedRequest};
use crate::tenants::{SeriesBudget, TenantIndex};
use crate::windows::RollupSettings;

/// What the registry made of a request's staged points (indexes into `staged.points`).
#[derive(Debug, Default)]
pub struct Admitted {
    /// The first point of each series first seen (its `series` row is due).
    pub new_series: Vec<usize>,
    /// Points refused for an id collision.
    pub collided: Vec<usize>,
    /// Points of series refused by the tenant's active-series limit.
    pub limited: Vec<usize>,
    /// Every refused point, sorted.
    pub refused: Vec<usize>,
}

/// The indexes of a request's staged points grouped by shard, in arrival order within each
/// (a stable counting sort, so that each shard is locked once and a series' points keep
/// their order).
pub struct ShardOrder {
    starts: [usize; SHARDS + 1],
    order: Vec<usize>,
}

impl ShardOrder {
    /// Sorts the points of `staged`.
    pub fn of(staged: &StagedRequest) -> Self {
        let points = &staged.points;
        let mut starts = [0usize; SHARDS + 1];
        points
            .iter()
            .for_each(|p| starts[shard_of(p.key.id) + 1] += 1);
        (0..SHARDS).for_each(|s| starts[s + 1] += starts[s]);
        let mut order = vec![0usize; points.len()];
        let mut next = starts;
        for (i, p) in points.iter().enumerate() {
            let s = shard_of(p.key.id);
            order[next[s]] = i;
            next[s] += 1;
        }
        ShardOrder { starts, order }
    }

    /// (shard, point indexes) of every shard holding points, shards in order.
    pub fn runs(&self) -> impl Iterator<Item = (usize, &[usize])> {
        (0..SHARDS)
            .map(|s| (s, &self.order[self.starts[s]..self.starts[s + 1]]))
            .filter(|(_, run)| !run.is_empty())
    }
}

/// The verdict on one series of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    Collide,
    OverLimit,
}

/// Per-request state of the verdicts: the room taken, and the series judged while inactive
/// (so that a series gets one verdict per request, whether or not it is recorded).
struct Judge<'b, 'a> {
    budget: &'b mut SeriesBudget<'a>,
    tenant: TenantIndex,
    now_ns: i64,
    /// `check`: record nothing.
    dry_run: bool,
    decided: IdMap<u64, bool>,
}

impl Judge<'_, '_> {
    /// The verdict on `key`; when it is accepted and this is not a dry run, the registry
    /// records the point (and `new` tells whether its `series` row is due).
    fn verdict(
        &mut self,
        registry: &mut SeriesRegistry,
        key: SeriesKey,
        new: &mut bool,
    ) -> Verdict {
        if !self.dry_run {
            if let Some(admission) = registry.admit_active(key, self.now_ns) {
                *new = admission == Admission::New;
                return Verdict::Accept;
            }
        }
        match registry.status(key) {
            SeriesStatus::Collision => {
                if !self.dry_run {
                    registry.note_collision(key.id);
                }
                return Verdict::Collide;
            }
            SeriesStatus::Active => {}
            SeriesStatus::Inactive => {
                let room = match self.decided.get(&key.id) {
                    Some(&room) => room,
                    None => {
                        let room = self.budget.take();
                        // Once recorded, an accepted series is active: only a dry run and
                        // refusals need remembering.
                        if self.dry_run || !room {
                            self.decided.insert(key.id, room);
                        }
                        room
                    }
                };
                if !room {
                    return Verdict::OverLimit;
                }
            }
        }
        if !self.dry_run {
            *new = registry.admit(key, self.tenant, self.now_ns) == Admission::New;
        }
        Verdict::Accept
    }
}

impl Admitted {
    fn note(&mut self, verdict: Verdict, i: usize) {
        match verdict {
            Verdict::Accept => return,
            Verdict::Collide => self.collided.push(i),
            Verdict::OverLimit => self.limited.push(i),
        }
        self.refused.push(i);
    }

    fn finish(mut self) -> Self {
        self.collided.sort_unstable();
        self.limited.sort_unstable();
        self.refused.sort_unstable();
        self
    }
}

impl MetricsCore {
    /// Registers series and appends Gauge, Sum and histogram points to chunks and every
    /// accepted point to its window, shard by shard (shards in order, points in arrival
    /// order within a shard; `judge` follows the same order).
    pub(crate) fn admit(
        &self,
        staged: &StagedRequest,
        seq: u64,
        now_ns: i64,
        budget: &mut SeriesBudget<'_>,
    ) -> Admitted {
        let points = &staged.points;
        let rollups = self.rollups.read().unwrap_or_else(PoisonError::into_inner);
        let mut judge = Judge {
            budget,
            tenant: staged.tenant,
            now_ns,
            dry_run: false,
            decided: IdMap::default(),
        };
        let mut admitted = Admitted::default();
        for (s, run) in ShardOrder::of(staged).runs() {
            let mut shard = lock(&self.shards[s]);
            let mut last: Option<(SeriesKey, Verdict)> = None;
            for &i in run {
                let p = &points[i];
                let verdict = match last {
                    Some((key, verdict)) if key == p.key => verdict,
                    _ => {
                        let mut new = false;
                        let verdict = judge.verdict(&mut shard.registry, p.key, &mut new);
                        if new {
                            admitted.new_series.push(i);
                        }
                        last = Some((p.key, verdict));
                        verdict
                    }
                };
                admitted.note(verdict, i);
                if verdict == Verdict::Accept {
                    self.append_point(&mut shard, staged, i, seq, &rollups);
                }
            }
        }
        admitted.finish()
    }

    /// The verdicts `admit` would give now, recording nothing.
    pub(crate) fn judge(
        &self,
        staged: &StagedRequest,
        now_ns: i64,
        budget: &mut SeriesBudget<'_>,
    ) -> Admitted {
        let mut judge = Judge {
            budget,
            tenant: staged.tenant,
            now_ns,
            dry_run: true,
            decided: IdMap::default(),
        };
        let mut admitted = Admitted::default();
        for (s, run) in ShardOrder::of(staged).runs() {
            let mut shard = lock(&self.shards[s]);
            for &i in run {
                let verdict = judge.verdict(&mut shard.registry, staged.points[i].key, &mut false);
                admitted.note(verdict, i);
            }
        }
        admitted.finish()
    }

    /// Appends an accepted point to its chunk (numbers, histograms) and its window.
    fn append_point(
        &self,
        shard: &mut Shard,
        staged: &StagedRequest,
        i: usize,
        seq: u64,
        rollups: &RollupSettings,
    ) {
        let p = &staged.points[i];
        let day = utc_day(p.time_ns);
        match p.payload {
            Payload::Number {
                value,
                start_ns,
                is_sum,
            } => shard
                .chunks
                .entry((p.key.id, day))
                .or_insert_with(|| ChunkBuf::new(is_sum))
                .push(p.time_ns, value, start_ns),
            Payload::Histogram {
                start_ns,
                layout_hash,
            } => {
                let point = HistogramPoint::of(staged, i, start_ns);
                histogram_chunks::append(&mut shard.histograms, p.key.id, day, layout_hash, &point);
            }
            Payload::Row { .. } => {}
        }
        if self.windows_enabled() {
            shard.windows.add(staged, i, rollups, seq, None);
        }
    }
}
