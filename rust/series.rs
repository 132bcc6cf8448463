//! Series identity: the canonical form, `SeriesKey` (id + fingerprint) and the registry of
//! series this process has already written.
//!
//! # Canonical form
//!
//! A series is identified by the bytes below; `id` is xxh3-64 (seed 0) of them and
//! `fingerprint` is xxh3-64 with seed [`FINGERPRINT_SEED`] of the same bytes. Two series with
//! equal ids but different fingerprints are a collision: counted, and the later points rejected
//! (`series_id_collision`), never merged.
//!
//! ```text
//! field(b)     = u32 LE byte length ‖ b
//! canonical    = field(metric name) ‖ field(unit) ‖ field(type) ‖ field(temporality)
//!              ‖ field(monotonic) ‖ attrset(resource attributes)
//!              ‖ field(scope name) ‖ field(scope version) ‖ attrset(scope attributes)
//!              ‖ attrset(point attributes)
//! type         = "gauge" | "sum" | "histogram" | "exponential_histogram" | "summary"
//! temporality  = "delta" | "cumulative" (sum, histogram, exponential_histogram) | "" (others)
//! monotonic    = "1" | "0" (sum) | "" (others)
//! attrset(kvs) = u32 LE count ‖ for each pair, sorted by key bytes: field(key) ‖ value
//! value        = 0x00                                  empty AnyValue
//!              | 0x01 ‖ field(UTF-8 bytes)             string
//!              | 0x02 ‖ u8 (0 or 1)                    bool
//!              | 0x03 ‖ i64 LE                         int
//!              | 0x04 ‖ u64 LE (IEEE-754 bits)         double (so 0.0 ≠ -0.0)
//!              | 0x05 ‖ u32 LE count ‖ value*          array (order kept)
//!              | 0x06 ‖ attrset                        kvlist (sorted like a set)
//!              | 0x07 ‖ field(bytes)                   bytes
//!              | 0x08 ‖ i32 LE                         string_value_strindex (profiles only)
//! ```
//!
//! The metric description, schema URLs, dropped-attribute counts, flags and exemplars are not
//! part of identity. Attribute sets with duplicate keys are rejected before hashing, so the
//! sorted order is total.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::attributes::put_field;

/// Seed of the fingerprint hash ("tidegate" in ASCII): any fixed value other than the id's 0.
pub const FINGERPRINT_SEED: u64 = 0x7469_6465_6761_7465;

/// The two hashes of one series' canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// xxh3-64 (seed 0): the `series.id` (stored as the same 64 bits in a signed bigint).
    pub id: u64,
    /// xxh3-64 with [`FINGERPRINT_SEED`]: tells two series with the same id apart.
    pub fingerprint: u64,
}

impl SeriesKey {
    /// Hashes canonical bytes (see the module docs).
    pub fn of_canonical(bytes: &[u8]) -> Self {
        SeriesKey {
            id: xxh3_64(bytes),
            fingerprint: xxh3_64_with_seed(bytes, FINGERPRINT_SEED),
        }
    }
}

/// The five OTLP metric types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl MetricKind {
    /// The `series.metric_type` value and canonical type tag.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Sum => "sum",
            MetricKind::Histogram => "histogram",
            MetricKind::ExponentialHistogram => "exponential_histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// Aggregation temporality of Sum and (exponential) histogram series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporality {
    Delta,
    Cumulative,
}

impl Temporality {
    /// From the OTLP enum value; `None` for UNSPECIFIED and unknown values.
    pub fn from_otlp(value: i32) -> Option<Self> {
        match value {
            1 => Some(Temporality::Delta),
            2 => Some(Temporality::Cumulative),
            _ => None,
        }
    }

    /// The `series.temporality` value and canonical tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Temporality::Delta => "delta",
            Temporality::Cumulative => "cumulative",
        }
    }
}

/// The metric-level part of identity besides name and unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricShape {
    pub kind: MetricKind,
    /// Set for sum, histogram and exponential histogram.
    pub temporality: Option<Temporality>,
    /// Set for sum only.
    pub monotonic: Option<bool>,
}

/// Appends the canonical form up to (excluding) the point attributes. `resource` and `scope`
/// are the already-encoded resource attribute set and scope part (name, version, attrset),
/// built once per resource and scope.
pub fn encode_metric_prefix(
    out: &mut Vec<u8>,
    name: &str,
    unit: &str,
    shape: MetricShape,
    resource: &[u8],
    scope: &[u8],
) {
    put_field(out, name.as_bytes());
    put_field(out, unit.as_bytes());
    put_field(out, shape.kind.as_str().as_bytes());
    put_field(
        out,
        shape.temporality.map_or("", Temporality::as_str).as_bytes(),
    );
    let monotonic = match shape.monotonic {
        Some(true) => "1",
        Some(false) => "0",
        None => "",
    };
    put_field(out, monotonic.as_bytes());
    out.extend_from_slice(resource);
    out.extend_from_slice(scope);
}

/// A `Hasher` for keys that are already uniformly distributed hashes (series ids): one
/// multiply instead of SipHash.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(23) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
}

/// `HashMap` keyed by series ids (or tuples of them) with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Outcome of presenting a series to the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// First time seen: the caller must emit its `series` row.
    New,
    /// Already written (same fingerprint).
    Known,
    /// Same id as a known series with another fingerprint: reject, never merge.
    Collision,
}

/// Series already sent to PostgreSQL by this process (id → fingerprint), and the ids that
/// collided. One per shard of `MetricsCore`.
#[derive(Default)]
pub struct SeriesRegistry {
    known: IdMap<u64, u64>,
    collided: HashSet<u64, BuildHasherDefault<IdHasher>>,
}

impl SeriesRegistry {
    /// Checks `key` and records it when new (check and insert are one step under the caller's
    /// lock, so two threads can never both see `New`).
    pub fn admit(&mut self, key: SeriesKey) -> Admission {
        match self.known.entry(key.id) {
            Entry::Vacant(e) => {
                e.insert(key.fingerprint);
                Admission::New
            }
            Entry::Occupied(e) if *e.get() == key.fingerprint => Admission::Known,
            Entry::Occupied(_) => {
                self.collided.insert(key.id);
                Admission::Collision
            }
        }
    }

    /// Forgets a series so that its next point is `New` again.
    pub fn forget(&mut self, id: u64) {
        self.known.remove(&id);
    }

    /// Records a fake entry (tests force collisions with it).
    pub fn insert(&mut self, id: u64, fingerprint: u64) {
        self.known.insert(id, fingerprint);
    }

    /// Number of known series.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether no series is known.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Distinct ids that collided.
    pub fn collisions(&self) -> usize {
        self.collided.len()
    }
}
