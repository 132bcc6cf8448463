//! What one rollup row holds for one (series, window, counter epoch, bucket layout): the
//! aggregate of the points a daemon saw, and how two such partials merge.
//!
//! Two merge rules, chosen by the metric's type (docs/architecture.md, "Rollups"):
//! - **additive** (gauges, non-monotonic sums, delta sums, delta histograms): counts and sums
//!   add, min/max combine, digests and bucket counts merge;
//! - **latest state** (cumulative monotonic sums, cumulative histograms, summaries): the row
//!   keeps the newest cumulative state of its epoch; readers take the difference between
//!   windows. Within one epoch a monotonic counter only grows, so min and max of the values
//!   are its first and last value whatever order the points arrived in.
//!
//! Both rules are commutative and associative, which is what makes partial rows from late
//! points, restarts and other daemons merge to the same answer.

use std::borrow::Cow;

use crate::exp_buckets::ExpBuckets;
use crate::tdigest::TDigest;

/// What an aggregate keeps besides its figures, by metric type. Every variant that holds
/// data holds it in a box, so that an aggregate is 104 bytes whatever its type (open windows
/// and hours are most of the core's memory per active series).
#[derive(Clone, Debug, PartialEq)]
pub enum Detail {
    /// A cumulative monotonic sum: its figures are its whole state.
    None,
    /// An additive gauge or sum that has had at most one value: the t-digest, of `compression`,
    /// is made when a second value comes, from the first one (`min` of a one-value aggregate).
    /// Most windows of a slow series get one point, and a digest holding one value is that
    /// value; see [`WindowAgg::row_digest`]. `compressed` says where that digest holds its
    /// value: in its centroids once a row was written from it (writing compresses a digest in
    /// place), else in its buffer; the next merge or add then sees the same digest either way.
    OneValue {
        compression: f64,
        compressed: bool,
    },
    /// An additive gauge or sum's t-digest of its values.
    Digest(Box<TDigest>),
    Explicit(Box<ExplicitBuckets>),
    Exponential(Box<ExpBuckets>),
    /// A summary's (quantile, value) pairs, from its newest point.
    Summary(Box<Vec<(f64, f64)>>),
}

impl Detail {
    /// The detail of a new gauge or sum aggregate: a digest of `compression` when `additive`.
    pub fn numbers(additive: bool, compression: f64) -> Detail {
        if additive {
            Detail::OneValue {
                compression,
                compressed: false,
            }
        } else {
            Detail::None
        }
    }
}

/// An explicit-bucket histogram's bounds and counts: `counts.len() == bounds.len() + 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplicitBuckets {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
}

/// A histogram or summary point's own count, sum, min and max (`NaN` sum when absent,
/// infinite min/max when absent).
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// How a point's buckets or quantiles go into an aggregate's [`Detail`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailMerge {
    /// Latest state: the point's replace the aggregate's.
    Replace,
    /// Additive: the point's add to the aggregate's.
    Add,
}

/// The aggregate of one partial window; see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowAgg {
    /// Latest-state merge rule instead of additive.
    pub cumulative: bool,
    /// Data points merged into this row.
    pub points: u64,
    /// Values (gauges, sums) or observations (histograms, summaries).
    pub count: u64,
    pub sum: f64,
    /// `+inf` / `-inf` while unknown.
    pub min: f64,
    pub max: f64,
    /// Earliest and newest point time (ns) and, for gauges and sums, their values
    /// (NaN for the other types).
    pub first_ns: i64,
    pub first_value: f64,
    pub last_ns: i64,
    pub last_value: f64,
    pub detail: Detail,
    /// The lowest spool sequence number of the requests merged in (`u64::MAX` when none is
    /// known): a restart replays the spool from the lowest one of every open aggregate.
    pub min_seq: u64,
}

impl WindowAgg {
    /// An empty aggregate.
    pub fn new(cumulative: bool, detail: Detail) -> Self {
        WindowAgg {
            cumulative,
            points: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first_ns: i64::MAX,
            first_value: f64::NAN,
            last_ns: i64::MIN,
            last_value: f64::NAN,
            detail,
            min_seq: u64::MAX,
        }
    }

    /// Adds a Gauge or Sum value.
    pub fn add_number(&mut self, time_ns: i64, value: f64) {
        self.note_time(time_ns, value);
        // A first value is kept as `min` alone (`Detail::OneValue`).
        let first = self.count == 0 && matches!(self.detail, Detail::OneValue { .. });
        if !first {
            if let Some(d) = self.digest_mut() {
                // Ingest only stages finite values, and only finite values reach here.
                let _ = d.add(value);
            }
        }
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds a histogram or summary point: its figures, and `detail` to put its buckets or
    /// quantiles into the aggregate's (called only when the point counts: always when
    /// additive, when it is the newest for latest state). Works in place, so the common case
    /// allocates nothing.
    pub fn add_point(
        &mut self,
        time_ns: i64,
        figures: Figures,
        detail: impl FnOnce(&mut Detail, DetailMerge),
    ) {
        let newest = time_ns >= self.last_ns;
        self.note_time(time_ns, f64::NAN);
        if !self.cumulative {
            self.count += figures.count;
            self.sum += figures.sum;
            self.min = self.min.min(figures.min);
            self.max = self.max.max(figures.max);
            detail(&mut self.detail, DetailMerge::Add);
        } else if newest {
            self.count = figures.count;
            self.sum = figures.sum;
            self.min = figures.min;
            self.max = figures.max;
            detail(&mut self.detail, DetailMerge::Replace);
        }
    }

    /// Merges another partial of the same key.
    pub fn merge(&mut self, other: WindowAgg) {
        let other_is_newer = other.last_ns >= self.last_ns;
        self.min_seq = self.min_seq.min(other.min_seq);
        self.points += other.points;
        if other.first_ns < self.first_ns {
            self.first_ns = other.first_ns;
            self.first_value = other.first_value;
        }
        if other_is_newer {
            self.last_ns = other.last_ns;
            self.last_value = other.last_value;
        }
        let numbers = matches!(
            self.detail,
            Detail::None | Detail::OneValue { .. } | Detail::Digest(_)
        );
        if self.cumulative && !numbers {
            if other_is_newer {
                self.take_state(other);
            }
            return;
        }
        // Before the figures change: a one-value digest is made from them.
        self.merge_digest(&other);
        // Counters too: their min and max are the epoch's first and last value.
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.add_detail(other.detail);
    }

    fn note_time(&mut self, time_ns: i64, value: f64) {
        self.points += 1;
        if time_ns < self.first_ns {
            self.first_ns = time_ns;
            self.first_value = value;
        }
        if time_ns >= self.last_ns {
            self.last_ns = time_ns;
            self.last_value = value;
        }
    }

    /// The digest of an additive gauge or sum, made from its one value first if need be.
    fn digest_mut(&mut self) -> Option<&mut TDigest> {
        if let Some(made) = self.one_value_digest() {
            self.detail = Detail::Digest(Box::new(made));
        }
        match &mut self.detail {
            Detail::Digest(d) => Some(d),
            _ => None,
        }
    }

    /// The digest a `Detail::OneValue` aggregate stands for: of its value, or empty.
    fn one_value_digest(&self) -> Option<TDigest> {
        let Detail::OneValue {
            compression,
            compressed,
        } = self.detail
        else {
            return None;
        };
        let mut d = TDigest::with_valid_compression(compression);
        if self.count == 1 {
            let _ = d.add(self.min);
        }
        if compressed {
            d.compress();
        }
        Some(d)
    }

    /// Merges `other`'s digest into this one, as if both had been made at their first value.
    fn merge_digest(&mut self, other: &WindowAgg) {
        let theirs = match &other.detail {
            Detail::Digest(d) => Cow::Borrowed(&**d),
            Detail::OneValue { .. } if other.count > 0 => {
                Cow::Owned(other.one_value_digest().expect("a one-value aggregate"))
            }
            _ => return,
        };
        if let Some(mine) = self.digest_mut() {
            mine.merge(&theirs);
        }
    }

    /// The digest a rollup row stores, compressed in place (`None` for the types without one).
    pub fn row_digest(&mut self) -> Option<Cow<'_, TDigest>> {
        if let Detail::OneValue { compressed, .. } = &mut self.detail {
            *compressed = true;
            return self.one_value_digest().map(Cow::Owned);
        }
        match &mut self.detail {
            Detail::Digest(d) => {
                d.compress();
                Some(Cow::Borrowed(&**d))
            }
            _ => None,
        }
    }

    fn take_state(&mut self, state: WindowAgg) {
        self.count = state.count;
        self.sum = state.sum;
        self.min = state.min;
        self.max = state.max;
        self.detail = state.detail;
    }

    fn add_detail(&mut self, other: Detail) {
        match (&mut self.detail, other) {
            (Detail::Explicit(mine), Detail::Explicit(more)) => {
                // Same key, so same layout (the layout hash is part of the key).
                let counts = mine.counts.iter_mut().zip(&more.counts);
                counts.for_each(|(c, m)| *c += m);
            }
            (Detail::Exponential(mine), Detail::Exponential(theirs)) => mine.merge(&theirs),
            (Detail::Summary(quantiles), Detail::Summary(newer)) => *quantiles = newer,
            _ => {}
        }
    }

    /// The value at quantile `q` for the precomputed columns: from the digest, the delta
    /// buckets or a summary's own quantiles; `None` where the row alone cannot tell (a
    /// cumulative histogram's window is a difference between rows).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        match &self.detail {
            Detail::Digest(d) => Some(d.quantile(q)),
            // Every quantile of a one-value digest is its value (`tdigest_query::quantile`).
            Detail::OneValue { .. } => Some(if (0.0..=1.0).contains(&q) {
                self.min
            } else {
                f64::NAN
            }),
            Detail::Summary(quantiles) => quantiles
                .iter()
                .find(|(qq, _)| (qq - q).abs() < 1e-9)
                .map(|&(_, v)| v),
            _ if self.cumulative => None,
            Detail::Explicit(e) => {
                crate::histogram_quantile::quantile(&e.bounds, &e.counts, q, self.min, self.max)
            }
            Detail::Exponential(e) => {
                let (bounds, counts) = e.to_explicit();
                crate::histogram_quantile::quantile(&bounds, &counts, q, self.min, self.max)
            }
            Detail::None => None,
        }
    }
}
