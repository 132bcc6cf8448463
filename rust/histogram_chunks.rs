//! Explicit-bucket histogram points buffered per (series, UTC day, bucket layout); each buffer
//! becomes one `histogram_chunks` row at `take_batch`.

use std::hash::Hasher;

use crate::series::{IdHasher, IdMap};
use crate::staged::StagedRequest;

/// The bucket layout of a histogram point: its bounds and how many bucket counts it carries
/// (`bounds.len() + 1`, or 0 when it has neither bounds nor buckets). Points of one chunk share
/// it, so the chunk stores the bounds once and the counts flattened.
#[derive(Clone, Copy, Debug)]
pub struct BucketLayout<'a> {
    pub bounds: &'a [f64],
    pub buckets_per_point: usize,
}

impl BucketLayout<'_> {
    /// A hash of the layout (bounds compared by bits), computed without any lock. Only a key:
    /// chunks with equal hashes are still told apart by [`HistogramChunk::has_layout`].
    pub fn hash(&self) -> u64 {
        let mut h = IdHasher::default();
        h.write_u64(self.buckets_per_point as u64);
        self.bounds.iter().for_each(|b| h.write_u64(b.to_bits()));
        h.finish()
    }
}

/// One histogram point, borrowed from the request.
#[derive(Clone, Copy, Debug)]
pub struct HistogramPoint<'a> {
    pub time_ns: i64,
    /// 0 when unset (a NULL element).
    pub start_ns: i64,
    pub count: u64,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub layout: BucketLayout<'a>,
    /// `layout.buckets_per_point` counts.
    pub bucket_counts: &'a [u64],
}

impl<'a> HistogramPoint<'a> {
    /// The histogram point at `staged.points[i]`, read from the request view (staging keeps
    /// only its start time and layout hash).
    pub fn of(staged: &'a StagedRequest<'_>, i: usize, start_ns: i64) -> Self {
        let p = &staged.points[i];
        let v = &staged.view.points[p.origin.point as usize];
        let bucket_counts = staged.view.counts(v.bucket_counts);
        HistogramPoint {
            time_ns: p.time_ns,
            start_ns,
            count: v.count,
            sum: v.sum,
            min: v.min,
            max: v.max,
            layout: BucketLayout {
                bounds: staged.view.bounds(v.explicit_bounds),
                buckets_per_point: bucket_counts.len(),
            },
            bucket_counts,
        }
    }
}

/// The points of one series, one UTC day and one bucket layout, in arrival order (like
/// [`crate::buffer::ChunkBuf`]), as parallel columns.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HistogramChunk {
    pub bounds: Vec<f64>,
    pub buckets_per_point: usize,
    /// Unix ns.
    pub times: Vec<i64>,
    /// Unix ns, 0 when unset.
    pub start_times: Vec<i64>,
    pub counts: Vec<u64>,
    pub sums: Vec<Option<f64>>,
    pub mins: Vec<Option<f64>>,
    pub maxs: Vec<Option<f64>>,
    /// `buckets_per_point` counts per point, point-major.
    pub bucket_counts: Vec<u64>,
}

impl HistogramChunk {
    fn new(layout: BucketLayout<'_>) -> Self {
        HistogramChunk {
            bounds: layout.bounds.to_vec(),
            buckets_per_point: layout.buckets_per_point,
            ..HistogramChunk::default()
        }
    }

    /// Whether points of `layout` belong here: exact, bitwise, so that a hash collision (or
    /// 0.0 against -0.0) never merges different bounds.
    pub fn has_layout(&self, layout: BucketLayout<'_>) -> bool {
        self.buckets_per_point == layout.buckets_per_point
            && self.bounds.len() == layout.bounds.len()
            && self
                .bounds
                .iter()
                .zip(layout.bounds)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }

    fn push(&mut self, p: &HistogramPoint<'_>) {
        self.times.push(p.time_ns);
        self.start_times.push(p.start_ns);
        self.counts.push(p.count);
        self.sums.push(p.sum);
        self.mins.push(p.min);
        self.maxs.push(p.max);
        self.bucket_counts.extend_from_slice(p.bucket_counts);
    }
}

/// Histogram chunks keyed by (series id, UTC day, [`BucketLayout::hash`]); the `Vec` holds one
/// chunk per distinct layout with that hash (almost always one).
pub type HistogramChunkMap = IdMap<(u64, i64, u64), Vec<HistogramChunk>>;

/// Appends `p` to the chunk of its series, day and layout; `layout_hash` is
/// `p.layout.hash()`, passed in so that it is computed before the shard lock is taken.
pub fn append(
    map: &mut HistogramChunkMap,
    id: u64,
    day: i64,
    layout_hash: u64,
    p: &HistogramPoint,
) {
    let chunks = map.entry((id, day, layout_hash)).or_default();
    let chunk = match chunks.iter().position(|c| c.has_layout(p.layout)) {
        Some(i) => &mut chunks[i],
        None => {
            chunks.push(HistogramChunk::new(p.layout));
            chunks.last_mut().expect("just pushed")
        }
    };
    chunk.push(p);
}
