//! Series identity: the canonical form, `SeriesKey` (id + fingerprint) and the registry of
//! series this process has seen (whether their row was written, whether they are active).
//!
//! # Canonical form
//!
//! A series is identified by the bytes below; `id` is xxh3-64 (seed 0) of them and
//! `fingerprint` is xxh3-64 with seed [`FINGERPRINT_SEED`] of the same bytes. Two series with
//! equal ids but different fingerprints are a collision: counted, and the later points rejected
//! (`series_id_collision`), never merged (except the one batch in which PostgreSQL, not this
//! process, finds it: [`SeriesRegistry::adopt_stored`]).
//!
//! ```text
//! field(b)     = u32 LE byte length ‖ b
//! canonical    = field(tenant) ‖ field(metric name) ‖ field(unit) ‖ field(type)
//!              ‖ field(temporality) ‖ field(monotonic) ‖ attrset(resource attributes)
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
//! `tenant` is the name of the tenant the request was written for (`default` when it named
//! none), so the same metric sent by two tenants is two series with different ids.
//!
//! The metric description, schema URLs, dropped-attribute counts, flags and exemplars are not
//! part of identity. Attribute sets with duplicate keys are rejected before hashing, so the
//! sorted order is total.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::attributes::put_field;
use crate::tenants::TenantIndex;

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
    tenant: &str,
    name: &str,
    unit: &str,
    shape: MetricShape,
    resource: &[u8],
    scope: &[u8],
) {
    put_field(out, tenant.as_bytes());
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
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
}

/// `HashMap` keyed by series ids (or tuples of them) with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Outcome of presenting a series to the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// First time seen (or forgotten since): the caller must emit its `series` row.
    New,
    /// Already written (same fingerprint).
    Known,
    /// Same id as a known series with another fingerprint: reject, never merge.
    Collision,
}

/// What the registry knows of a series, before its point is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesStatus {
    /// Counted as active for its tenant: its points need no room under the limit.
    Active,
    /// Unknown, or known but idle: accepting a point makes it active.
    Inactive,
    /// Same id as a known series with another fingerprint.
    Collision,
}

/// What the registry keeps per series: 24 bytes besides the id.
#[derive(Clone, Copy, Debug)]
struct SeriesState {
    fingerprint: u64,
    /// Arrival time (`now_ns`) of its newest accepted point.
    last_active_ns: i64,
    tenant: TenantIndex,
    /// Its `series` row was sent (or is in the buffer).
    written: bool,
    /// Counted in its tenant's active series.
    active: bool,
}

/// Series this process has seen (id → fingerprint, tenant, activity), and the ids that
/// collided. One per shard of `MetricsCore`. Idle series stay known (so that a collision is
/// still noticed), they only stop counting as active.
#[derive(Default)]
pub struct SeriesRegistry {
    known: IdMap<u64, SeriesState>,
    written: usize,
    collided: HashSet<u64, BuildHasherDefault<IdHasher>>,
}

/// A known series' accepted point at `now_ns`: active from now on; `New` when its `series`
/// row is due again (`written` counts the series written).
fn record_point(s: &mut SeriesState, written: &mut usize, now_ns: i64) -> Admission {
    s.last_active_ns = s.last_active_ns.max(now_ns);
    s.active = true;
    if s.written {
        return Admission::Known;
    }
    s.written = true;
    *written += 1;
    Admission::New
}

impl SeriesRegistry {
    /// Whether `key` is active, inactive or collides; records nothing.
    pub fn status(&self, key: SeriesKey) -> SeriesStatus {
        match self.known.get(&key.id) {
            None => SeriesStatus::Inactive,
            Some(s) if s.fingerprint != key.fingerprint => SeriesStatus::Collision,
            Some(s) if s.active => SeriesStatus::Active,
            Some(_) => SeriesStatus::Inactive,
        }
    }

    /// Records a point of `key` arriving at `now_ns` when the series is active (so it needs no
    /// room) and does not collide: `admit`'s answer, in one lookup instead of `status`'s and
    /// `admit`'s. None when the series is unknown, idle or collides.
    pub fn admit_active(&mut self, key: SeriesKey, now_ns: i64) -> Option<Admission> {
        let s = self.known.get_mut(&key.id)?;
        if s.fingerprint != key.fingerprint || !s.active {
            return None;
        }
        Some(record_point(s, &mut self.written, now_ns))
    }

    /// Records an accepted point of `key` arriving at `now_ns`: the series is active from
    /// now on (the caller took room for it when its status was `Inactive`). Check and insert
    /// are one step under the caller's lock, so two threads can never both see `New`.
    pub fn admit(&mut self, key: SeriesKey, tenant: TenantIndex, now_ns: i64) -> Admission {
        match self.known.entry(key.id) {
            Entry::Vacant(e) => {
                e.insert(SeriesState {
                    fingerprint: key.fingerprint,
                    last_active_ns: now_ns,
                    tenant,
                    written: true,
                    active: true,
                });
                self.written += 1;
                Admission::New
            }
            Entry::Occupied(e) if e.get().fingerprint != key.fingerprint => {
                self.collided.insert(key.id);
                Admission::Collision
            }
            Entry::Occupied(mut e) => record_point(e.get_mut(), &mut self.written, now_ns),
        }
    }

    /// Notes a collision found by [`status`](Self::status).
    pub fn note_collision(&mut self, id: u64) {
        self.collided.insert(id);
    }

    /// Ends the activity of series whose newest point arrived before `cutoff_ns`, calling
    /// `expired` with the tenant of each.
    pub fn sweep(&mut self, cutoff_ns: i64, mut expired: impl FnMut(TenantIndex)) {
        for s in self.known.values_mut() {
            if s.active && s.last_active_ns < cutoff_ns {
                s.active = false;
                expired(s.tenant);
            }
        }
    }

    /// Forgets that a series was written, so that its next point is `New` again.
    pub fn forget(&mut self, id: u64) {
        if let Some(s) = self.known.get_mut(&id) {
            if s.written {
                s.written = false;
                self.written -= 1;
            }
        }
    }

    /// Takes `fingerprint` as that of `id`: PostgreSQL holds another series under the id this
    /// process gave one of its own, so from now on this process's points of it are collisions
    /// (rejected) instead of being stored under the other series' id.
    pub fn adopt_stored(&mut self, id: u64, fingerprint: u64) {
        if let Some(s) = self.known.get_mut(&id) {
            s.fingerprint = fingerprint;
        }
    }

    /// Records a fake, idle entry of the default tenant (tests force collisions with it).
    pub fn insert(&mut self, id: u64, fingerprint: u64) {
        let state = SeriesState {
            fingerprint,
            last_active_ns: i64::MIN,
            tenant: 0,
            written: true,
            active: false,
        };
        if let Some(old) = self.known.insert(id, state) {
            if old.written {
                return;
            }
        }
        self.written += 1;
    }

    /// Number of series written (or about to be).
    pub fn len(&self) -> usize {
        self.written
    }

    /// Whether no series is written.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Distinct ids that collided.
    pub fn collisions(&self) -> usize {
        self.collided.len()
    }
}
