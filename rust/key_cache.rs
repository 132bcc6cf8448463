//! Series keys of attribute sets seen before, known by the bytes they arrived as.
//!
//! Staging a point encodes its attributes in canonical form (sorted by key, checked against
//! the limits) after its metric's prefix and hashes the whole twice (`SeriesKey`). Encoders
//! write one attribute set as the same bytes request after request, so each thread that stages
//! keeps the key it computed under (the metric's canonical prefix, xxh3-128 of the point's
//! attribute fields as they arrived). A point whose attribute bytes it has seen under the same
//! prefix and attribute limits takes that key: the same bytes decode to the same attributes,
//! which pass the same checks and encode to the same canonical form. Only accepted attribute
//! sets are kept; a refused one is checked again each time.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::attributes::AttributeLimits;
use crate::series::{IdMap, SeriesKey};

/// Keys kept per thread: 7/8 of 2¹⁷, the most a table of 2¹⁷ slots holds (49 bytes a slot,
/// 6.1 MiB).
pub const MAX_KEYS: usize = 7 << 14;

/// Attribute fields kept per thread as decoded before (a table of 2¹⁶ slots of 32 bytes,
/// plus the bytes: about 10 MiB with 5 attributes a point).
pub const MAX_DECODED: usize = 7 << 13;

/// One thread's cache; see the module docs.
#[derive(Default)]
pub struct KeyCache {
    limits: Option<AttributeLimits>,
    /// Canonical metric prefixes (tenant, name, unit, shape, resource, scope) → a small id.
    prefixes: HashMap<Vec<u8>, u32>,
    keys: IdMap<(u32, u128), SeriesKey>,
    /// Attribute fields this thread decoded, by their xxh3-128: bytes equal to one of these
    /// decode (`decode_request_lazy` leaves them undecoded).
    decoded: IdMap<u128, Box<[u8]>>,
}

impl KeyCache {
    /// Called at the start of every request of `points` points: starts over when the limits
    /// changed or the request's keys might not fit, so that the prefix ids handed out stay
    /// valid for the whole request and the table never grows past its 2¹⁷ slots.
    pub fn begin(&mut self, limits: AttributeLimits, points: usize) {
        if self.limits != Some(limits) || self.keys.len() + points > MAX_KEYS {
            self.prefixes.clear();
            self.keys.clear();
            self.limits = Some(limits);
        }
    }

    /// The id of a metric's canonical prefix.
    pub fn prefix(&mut self, canonical: &[u8]) -> u32 {
        if let Some(&id) = self.prefixes.get(canonical) {
            return id;
        }
        let id = self.prefixes.len() as u32;
        self.prefixes.insert(canonical.to_vec(), id);
        id
    }

    /// The key of the attribute bytes with `digest` under prefix `prefix`, when seen before.
    pub fn get(&self, prefix: u32, digest: u128) -> Option<SeriesKey> {
        self.keys.get(&(prefix, digest)).copied()
    }

    /// Whether `fields` (with xxh3-128 `digest`) are bytes this thread decoded before.
    pub fn decoded_before(&self, digest: u128, fields: &[u8]) -> bool {
        self.decoded
            .get(&digest)
            .is_some_and(|kept| **kept == *fields)
    }

    /// Notes attribute fields that decoded (any time: forgetting them only costs a decode).
    pub fn note_decoded(&mut self, digest: u128, fields: &[u8]) {
        if self.decoded.len() >= MAX_DECODED {
            self.decoded.clear();
        }
        self.decoded.insert(digest, fields.into());
    }

    /// Number of keys kept.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keeps the key of an accepted attribute set.
    pub fn insert(&mut self, prefix: u32, digest: u128, key: SeriesKey) {
        self.keys.insert((prefix, digest), key);
    }
}

thread_local! {
    /// The cache of the thread that stages.
    pub static KEY_CACHE: RefCell<KeyCache> = RefCell::default();
}
