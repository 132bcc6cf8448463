//! Exponential-histogram buckets that can be added together: two histograms at different
//! scales are both brought to the coarser scale first (bucket `i` at scale `s` lies inside
//! bucket `i >> d` at scale `s - d`), as the OpenTelemetry data model describes merging.

/// Beyond this many buckets per range a merge lowers the scale again, so that rows stay small
/// (the SDK's default maximum is 160).
const MAX_BUCKETS: usize = 320;

/// One range (positive or negative) of buckets: `counts[k]` is bucket `offset + k`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BucketRange {
    pub offset: i32,
    pub counts: Vec<u64>,
}

impl BucketRange {
    fn downscale(&mut self, by: u32) {
        if by == 0 || self.counts.is_empty() {
            return;
        }
        let by = by.min(31);
        let new_offset = self.offset >> by;
        let mut counts = Vec::new();
        for (k, &c) in self.counts.iter().enumerate() {
            let index = ((self.offset + k as i32) >> by) - new_offset;
            let index = index as usize;
            if counts.len() <= index {
                counts.resize(index + 1, 0);
            }
            counts[index] += c;
        }
        self.offset = new_offset;
        self.counts = counts;
    }

    fn add(&mut self, other: &BucketRange) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        let start = self.offset.min(other.offset);
        let end =
            (self.offset + self.counts.len() as i32).max(other.offset + other.counts.len() as i32);
        let mut counts = vec![0u64; (end - start) as usize];
        for range in [&*self, other] {
            let at = (range.offset - start) as usize;
            counts[at..at + range.counts.len()]
                .iter_mut()
                .zip(&range.counts)
                .for_each(|(c, m)| *c += m);
        }
        self.offset = start;
        self.counts = counts;
    }

    /// How many scale steps bring the union with `other` under `MAX_BUCKETS`.
    fn steps_to_fit(&self, other: &BucketRange) -> u32 {
        let ends = |r: &BucketRange| (r.offset, r.offset + r.counts.len() as i32);
        let (mut lo, mut hi) = ends(self);
        if self.counts.is_empty() {
            (lo, hi) = ends(other);
        } else if !other.counts.is_empty() {
            lo = lo.min(other.offset);
            hi = hi.max(ends(other).1);
        }
        let mut steps = 0;
        while hi > lo && ((hi - 1) >> steps) - (lo >> steps) + 1 > MAX_BUCKETS as i32 {
            steps += 1;
        }
        steps
    }
}

/// The buckets of an exponential histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpBuckets {
    pub scale: i32,
    pub zero_count: u64,
    pub positive: BucketRange,
    pub negative: BucketRange,
}

impl ExpBuckets {
    /// Lowers the scale by `by` steps.
    pub fn downscale(&mut self, by: u32) {
        self.scale -= by as i32;
        self.positive.downscale(by);
        self.negative.downscale(by);
    }

    /// Adds `other`'s counts, at the coarser of the two scales.
    pub fn merge(&mut self, other: &ExpBuckets) {
        let mut other = other.clone();
        let scale = self.scale.min(other.scale);
        self.downscale((self.scale - scale) as u32);
        other.downscale((other.scale - scale) as u32);
        let steps = self
            .positive
            .steps_to_fit(&other.positive)
            .max(self.negative.steps_to_fit(&other.negative));
        self.downscale(steps);
        other.downscale(steps);
        self.zero_count += other.zero_count;
        self.positive.add(&other.positive);
        self.negative.add(&other.negative);
    }

    /// The same counts as an explicit-bucket histogram (upper bounds, increasing), for
    /// quantile estimation: an empty underflow bucket (so the first negative bucket has its
    /// lower edge), negative buckets, the zero bucket (up to 0), an empty bucket up to the
    /// first positive bucket's lower edge, positive buckets, and an empty overflow bucket.
    pub fn to_explicit(&self) -> (Vec<f64>, Vec<u64>) {
        let base_log2 = (-self.scale as f64).exp2();
        let boundary = |index: i32| (index as f64 * base_log2).exp2();
        let mut bounds = Vec::new();
        let mut counts = Vec::new();
        let neg = &self.negative;
        if !neg.counts.is_empty() {
            counts.push(0);
            bounds.push(-boundary(neg.offset + neg.counts.len() as i32));
        }
        for (k, &c) in neg.counts.iter().enumerate().rev() {
            counts.push(c);
            bounds.push(-boundary(neg.offset + k as i32));
        }
        counts.push(self.zero_count);
        bounds.push(0.0);
        let pos = &self.positive;
        if !pos.counts.is_empty() {
            counts.push(0);
            bounds.push(boundary(pos.offset));
        }
        for (k, &c) in pos.counts.iter().enumerate() {
            counts.push(c);
            bounds.push(boundary(pos.offset + k as i32 + 1));
        }
        counts.push(0);
        (bounds, counts)
    }
}
