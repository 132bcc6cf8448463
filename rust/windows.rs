//! Open time windows: every accepted point is also added to the aggregate of its (series,
//! window, counter epoch, bucket layout); windows close by the wall clock and become rollup
//! rows. A shard of `MetricsCore` owns the windows of its series, so they are updated under
//! the same lock as the series' chunks.

use crate::exp_buckets::{BucketRange, ExpBuckets};
use crate::histogram_chunks::HistogramPoint;
use crate::otlp_view::PointView;
use crate::series::IdMap;
use crate::staged::{Payload, RowTable, StagedRequest};
use crate::tenants::TenantIndex;
use crate::window_agg::{Detail, DetailMerge, ExplicitBuckets, Figures, WindowAgg};

pub use crate::rollup_settings::{
    hour_horizon, window_horizon, RollupSettings, WindowChange, HOUR_NS, NS_PER_SECOND,
};

/// OTLP `AGGREGATION_TEMPORALITY_CUMULATIVE`.
const CUMULATIVE: i32 = 2;
/// What a rollup row is for; equal keys are partials of one row and merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowKey {
    pub series: u64,
    /// The series' tenant (an index into the core's `Tenants`; the id already tells tenants
    /// apart, this only names the tenant of the row).
    pub tenant: TenantIndex,
    pub start_ns: i64,
    /// Start of the counter epoch (cumulative types; 0 otherwise or when unknown).
    pub epoch_ns: i64,
    /// `BucketLayout::hash` of explicit-bucket histograms, 0 otherwise.
    pub layout: u64,
}

/// Resets remembered per counter, so that a late point from before one still finds its epoch.
const KEPT_RESETS: usize = 8;

/// The newest point seen of a cumulative counter, to detect a reset that keeps its start
/// time (a value that drops): the points from the drop on get an epoch of their own.
#[derive(Clone, Debug)]
struct CounterTrack {
    reported_start_ns: i64,
    /// Times of the drops seen since `reported_start_ns`, oldest first.
    resets: Vec<i64>,
    last_ns: i64,
    last_value: f64,
}

impl CounterTrack {
    fn new(reported_start_ns: i64) -> Self {
        CounterTrack {
            reported_start_ns,
            resets: Vec::new(),
            last_ns: i64::MIN,
            last_value: f64::NEG_INFINITY,
        }
    }

    /// The epoch in force at `time_ns`: the last reset at or before it, else the start.
    fn epoch_at(&self, time_ns: i64) -> i64 {
        self.resets
            .iter()
            .rev()
            .find(|&&r| r <= time_ns)
            .copied()
            .unwrap_or(self.reported_start_ns)
    }
}

/// Aggregates taken out of an [`OpenWindows`], each still in its box.
pub type TakenWindows = Vec<(WindowKey, Box<WindowAgg>)>;

/// Open aggregates by key, the earliest window start among them and the lowest spool
/// sequence number merged into them: `take_started_by` runs under the core's write gate at
/// every flush, and skips the scan when nothing can have closed.
///
/// Aggregates are boxed: a hash table has up to twice as many slots as entries, and a slot
/// of a 40-byte key and an 8-byte box instead of the aggregate (256 bytes then, 104 now)
/// was most of what an open window cost per series (measured with `bench/series_memory.py`).
/// Moving a closed window into its hour, and sorting closed windows, then moves pointers.
pub struct OpenWindows {
    map: IdMap<WindowKey, Box<WindowAgg>>,
    /// `i64::MAX` when empty.
    earliest_start_ns: i64,
    /// `i64::MIN` when empty.
    latest_start_ns: i64,
    /// A lower bound of the aggregates' `min_seq` (exact after every scan); `u64::MAX` when
    /// empty.
    min_seq: u64,
}

impl Default for OpenWindows {
    fn default() -> Self {
        OpenWindows {
            map: IdMap::default(),
            earliest_start_ns: i64::MAX,
            latest_start_ns: i64::MIN,
            min_seq: u64::MAX,
        }
    }
}

impl OpenWindows {
    /// The aggregate of `key`, made by `new` when absent, noted as holding data of spool
    /// record `seq`.
    pub fn get_or_insert_with(
        &mut self,
        key: WindowKey,
        seq: u64,
        new: impl FnOnce() -> WindowAgg,
    ) -> &mut WindowAgg {
        self.earliest_start_ns = self.earliest_start_ns.min(key.start_ns);
        self.latest_start_ns = self.latest_start_ns.max(key.start_ns);
        self.min_seq = self.min_seq.min(seq);
        let agg: &mut WindowAgg = self.map.entry(key).or_insert_with(|| Box::new(new()));
        agg.min_seq = agg.min_seq.min(seq);
        agg
    }

    /// Merges `agg` into the aggregate of `key` (or keeps it as that aggregate).
    pub fn merge(&mut self, key: WindowKey, agg: Box<WindowAgg>) {
        self.min_seq = self.min_seq.min(agg.min_seq);
        match self.map.get_mut(&key) {
            Some(open) => open.merge(*agg),
            None => {
                self.earliest_start_ns = self.earliest_start_ns.min(key.start_ns);
                self.latest_start_ns = self.latest_start_ns.max(key.start_ns);
                self.map.insert(key, agg);
            }
        }
    }

    /// Removes and returns the aggregates that start at or before `horizon_ns` (all with
    /// `all`).
    pub fn take_started_by(&mut self, horizon_ns: i64, all: bool) -> TakenWindows {
        if !all && horizon_ns < self.earliest_start_ns {
            return Vec::new();
        }
        let mut earliest = i64::MAX;
        let mut latest = i64::MIN;
        let mut min_seq = u64::MAX;
        let taken = self
            .map
            .extract_if(|k, agg| {
                let closed = all || k.start_ns <= horizon_ns;
                if !closed {
                    earliest = earliest.min(k.start_ns);
                    latest = latest.max(k.start_ns);
                    min_seq = min_seq.min(agg.min_seq);
                }
                closed
            })
            .collect();
        self.earliest_start_ns = earliest;
        self.latest_start_ns = latest;
        self.min_seq = min_seq;
        taken
    }

    /// No spool record below this one holds data of an open aggregate (`u64::MAX` when none
    /// is open).
    pub fn min_seq(&self) -> u64 {
        self.min_seq
    }

    /// The earliest window start among the open aggregates (`None` when none is open).
    pub fn earliest_start_ns(&self) -> Option<i64> {
        (!self.map.is_empty()).then_some(self.earliest_start_ns)
    }

    /// The latest window start among the open aggregates (`None` when none is open).
    pub fn latest_start_ns(&self) -> Option<i64> {
        (!self.map.is_empty()).then_some(self.latest_start_ns)
    }

    /// Aggregates open.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Where a replayed point of a request whose raw points were already committed goes: the
/// checkpoint of that commit says which of its windows and hours were written then.
#[derive(Clone, Copy, Debug)]
pub struct ReplayFilter {
    /// The flush time of the last committed batch (`i64::MAX` when it wrote every window).
    pub closed_at_ns: i64,
    /// The same for hours: every hour that closed by this time is written (`i64::MAX` when
    /// the batch wrote every hour at shutdown). Shutdown writes every window in one batch and
    /// the hours in the next, so between the two this is the flush time, not `i64::MAX`.
    pub hours_closed_at_ns: i64,
    /// The last flush that wrote every open hour (`i64::MIN` when none did).
    pub hours_flushed_at_ns: i64,
    /// Whether the request's points were committed by that hour flush.
    pub in_hour_flush: bool,
    /// Whether a shutdown wrote every window of the request, open or not, by that commit.
    /// After a restart an older request taken from the spool can reopen such a window and
    /// hold later checkpoints' `open_from_seq` below this one, whose flush times then say
    /// nothing of what the shutdown wrote.
    pub windows_written: bool,
    /// The same by the last hour flush: its rows then hold the request's whole share of
    /// every hour they wrote (a window goes into its hour when it is written).
    pub windows_written_by_hour_flush: bool,
}

/// Which open aggregate a point goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Its window (every point of a live request).
    Window,
    /// A window that was already written but whose hour was not: it only feeds the hour.
    HourPart,
}

impl ReplayFilter {
    /// Where a point of window `start_ns` goes, or `None` when the committed batches wrote
    /// it (window row and hour row alike).
    pub fn target(&self, start_ns: i64, settings: &RollupSettings) -> Option<Target> {
        let window_closed_by = |at: i64| start_ns <= window_horizon(at, settings);
        if !self.windows_written && !window_closed_by(self.closed_at_ns) {
            return Some(Target::Window);
        }
        let hour_start = start_ns - start_ns.rem_euclid(HOUR_NS);
        if hour_start <= hour_horizon(self.hours_closed_at_ns, settings) {
            return None;
        }
        if self.in_hour_flush
            && (self.windows_written_by_hour_flush || window_closed_by(self.hours_flushed_at_ns))
        {
            return None;
        }
        Some(Target::HourPart)
    }
}

/// The open windows of one shard.
#[derive(Default)]
pub struct Windows {
    open: OpenWindows,
    /// Replayed windows already written whose hour is still open (see [`ReplayFilter`]).
    hour_parts: OpenWindows,
    counters: IdMap<u64, CounterTrack>,
}

impl Windows {
    /// Adds the accepted point `staged.points[i]`, of spool record `seq`, to its window, or
    /// where `replay` says (nowhere when its window and hour were written).
    pub fn add(
        &mut self,
        staged: &StagedRequest<'_>,
        i: usize,
        settings: &RollupSettings,
        seq: u64,
        replay: Option<&ReplayFilter>,
    ) {
        let p = &staged.points[i];
        let start_ns = settings.window_start(p.time_ns);
        let target = match replay {
            None => Target::Window,
            Some(filter) => match filter.target(start_ns, settings) {
                Some(target) => target,
                None => return,
            },
        };
        let metric = staged.metric(p.origin);
        let view = &staged.view.points[p.origin.point as usize];
        let cumulative = metric.temporality == CUMULATIVE;
        let mut key = WindowKey {
            series: p.key.id,
            tenant: staged.tenant,
            start_ns,
            epoch_ns: 0,
            layout: 0,
        };
        match p.payload {
            Payload::Number {
                value,
                start_ns: epoch,
                is_sum,
            } => {
                let counter = is_sum && cumulative && metric.monotonic;
                if counter {
                    key.epoch_ns = self.counter_epoch(p.key.id, epoch, p.time_ns, value);
                }
                self.map(target)
                    .get_or_insert_with(key, seq, || {
                        let detail = Detail::numbers(!counter, settings.digest_compression());
                        WindowAgg::new(counter, detail)
                    })
                    .add_number(p.time_ns, value);
            }
            Payload::Histogram {
                start_ns: epoch,
                layout_hash,
            } => {
                let point = HistogramPoint::of(staged, i, epoch);
                key.epoch_ns = if cumulative { epoch } else { 0 };
                key.layout = layout_hash;
                let (bounds, counts) = (point.layout.bounds, point.bucket_counts);
                self.map(target)
                    .get_or_insert_with(key, seq, || {
                        let detail = Detail::Explicit(Box::new(ExplicitBuckets {
                            bounds: bounds.to_vec(),
                            counts: vec![0; counts.len()],
                        }));
                        WindowAgg::new(cumulative, detail)
                    })
                    .add_point(
                        p.time_ns,
                        figures(point.count, point.sum, point.min, point.max),
                        |detail, merge| {
                            if let Detail::Explicit(e) = detail {
                                // Same key, so same layout: the lengths are equal.
                                let mine = &mut e.counts;
                                match merge {
                                    DetailMerge::Replace => mine.copy_from_slice(counts),
                                    DetailMerge::Add => {
                                        mine.iter_mut().zip(counts).for_each(|(m, c)| *m += c)
                                    }
                                }
                            }
                        },
                    );
            }
            Payload::Row {
                table: RowTable::ExpHistogram,
                ..
            } => {
                key.epoch_ns = if cumulative { start_of(view) } else { 0 };
                let buckets = exp_buckets(staged, view);
                let empty = ExpBuckets {
                    scale: buckets.scale,
                    ..ExpBuckets::default()
                };
                self.map(target)
                    .get_or_insert_with(key, seq, || {
                        WindowAgg::new(cumulative, Detail::Exponential(Box::new(empty)))
                    })
                    .add_point(
                        p.time_ns,
                        figures(view.count, view.sum, view.min, view.max),
                        |detail, merge| match (detail, merge) {
                            (Detail::Exponential(mine), DetailMerge::Add) => mine.merge(&buckets),
                            (Detail::Exponential(mine), DetailMerge::Replace) => **mine = buckets,
                            (detail, _) => *detail = Detail::Exponential(Box::new(buckets)),
                        },
                    );
            }
            Payload::Row {
                table: RowTable::Summary,
                ..
            } => {
                // A summary's count and sum are cumulative since its start time.
                key.epoch_ns = start_of(view);
                let quantiles: Vec<(f64, f64)> = view
                    .quantile_values
                    .of(&staged.view.quantiles)
                    .iter()
                    .map(|q| (q.quantile, q.value))
                    .collect();
                let at = |q: f64| quantiles.iter().find(|p| p.0 == q).map(|p| p.1);
                let own = figures(view.count, view.sum, at(0.0), at(1.0));
                let empty = Detail::Summary(Box::default());
                self.map(target)
                    .get_or_insert_with(key, seq, || WindowAgg::new(true, empty))
                    .add_point(p.time_ns, own, |detail, _| match detail {
                        Detail::Summary(mine) => **mine = quantiles,
                        detail => *detail = Detail::Summary(Box::new(quantiles)),
                    });
            }
        }
    }

    fn map(&mut self, target: Target) -> &mut OpenWindows {
        match target {
            Target::Window => &mut self.open,
            Target::HourPart => &mut self.hour_parts,
        }
    }

    /// The epoch of a cumulative counter's point: its start time, unless the value dropped
    /// since the newest point of that start time, which is a reset at this point.
    fn counter_epoch(&mut self, series: u64, start_ns: i64, time_ns: i64, value: f64) -> i64 {
        let track = self
            .counters
            .entry(series)
            .or_insert_with(|| CounterTrack::new(start_ns));
        if track.reported_start_ns != start_ns {
            *track = CounterTrack::new(start_ns);
        }
        if time_ns > track.last_ns {
            if value < track.last_value {
                if track.resets.len() == KEPT_RESETS {
                    track.resets.remove(0);
                }
                track.resets.push(time_ns);
            }
            track.last_ns = time_ns;
            track.last_value = value;
        }
        track.epoch_at(time_ns)
    }

    /// Removes and returns the windows that have closed by `now_ns` (every window when `all`).
    pub fn take_closed(
        &mut self,
        now_ns: i64,
        settings: &RollupSettings,
        all: bool,
    ) -> TakenWindows {
        self.open
            .take_started_by(window_horizon(now_ns, settings), all)
    }

    /// Removes and returns every replayed hour part.
    pub fn take_hour_parts(&mut self) -> TakenWindows {
        self.hour_parts.take_started_by(i64::MAX, true)
    }

    /// No spool record below this one holds data of an open window (`u64::MAX` when none).
    pub fn min_seq(&self) -> u64 {
        self.open.min_seq().min(self.hour_parts.min_seq())
    }

    /// The start of the oldest window still waiting to close (`None` when none is open).
    /// Replayed hour parts are left out: their windows were written already, and every
    /// flush takes them.
    pub fn oldest_open_start_ns(&self) -> Option<i64> {
        self.open.earliest_start_ns()
    }

    /// The start of the newest window open, replayed hour parts included (`None` when none).
    pub fn newest_open_start_ns(&self) -> Option<i64> {
        self.open
            .latest_start_ns()
            .max(self.hour_parts.latest_start_ns())
    }

    /// Windows currently open.
    pub fn len(&self) -> usize {
        self.open.len() + self.hour_parts.len()
    }

    /// Whether no window is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty() && self.hour_parts.is_empty()
    }
}

fn start_of(view: &PointView) -> i64 {
    i64::try_from(view.start_time_unix_nano).unwrap_or(0)
}

/// A histogram or summary point's own figures.
fn figures(count: u64, sum: Option<f64>, min: Option<f64>, max: Option<f64>) -> Figures {
    Figures {
        count,
        // An absent sum stays unknown (NaN, stored as NULL) rather than becoming 0.
        sum: sum.unwrap_or(f64::NAN),
        min: min.unwrap_or(f64::INFINITY),
        max: max.unwrap_or(f64::NEG_INFINITY),
    }
}

fn exp_buckets(staged: &StagedRequest<'_>, view: &PointView) -> ExpBuckets {
    let range = |b| {
        let (offset, counts) = staged.view.buckets(b);
        BucketRange {
            offset,
            counts: counts.to_vec(),
        }
    };
    ExpBuckets {
        scale: view.scale,
        zero_count: view.zero_count,
        positive: range(view.positive),
        negative: range(view.negative),
    }
}
