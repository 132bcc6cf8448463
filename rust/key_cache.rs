//! Series keys of attribute sets seen before, known by the exact bytes they arrived as.
//!
//! Staging a point encodes its attributes in canonical form (sorted by key, checked against
//! the limits) after its metric's prefix and hashes the whole twice (`SeriesKey`); decoding
//! them checks every string's UTF-8. Encoders write one attribute set as the same bytes request
//! after request, so each thread that decodes and stages keeps:
//!
//! - the attribute sets it decoded: a point's attribute fields as they arrived (one run of
//!   fields, up to [`MAX_SET_LEN`] bytes), found by their xxh3-128 and compared byte for byte,
//!   each with a small id. Bytes equal to a kept set, read at the same place, decode again,
//!   so `decode_request_lazy` leaves them undecoded;
//! - the canonical prefixes of metrics (tenant, name, unit, shape, resource, scope), each with
//!   a small id, within a byte budget;
//! - the key computed for (prefix id, attribute set id) under the current attribute limits.
//!
//! A point whose set and prefix have a key takes it: the same bytes decode to the same
//! attributes, which pass the same checks and encode to the same canonical form. Only accepted
//! sets get a key; a refused one is checked again each time. Ids are exact (bytes compared),
//! so no crafted hash collision can give a point another series' key.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::attributes::AttributeLimits;
use crate::series::{IdMap, SeriesKey};

/// Keys kept per thread: 7/8 of 2¹⁷, the most a table of 2¹⁷ slots holds (25 bytes a slot,
/// 3.1 MiB).
pub const MAX_KEYS: usize = 7 << 14;

/// Attribute sets kept per thread (a table of 2¹⁶ slots of 49 bytes, 3.1 MiB, plus their
/// bytes).
pub const MAX_SETS: usize = 7 << 13;

/// Bytes of attribute sets kept per thread.
pub const MAX_SET_BYTES: usize = 8 << 20;

/// The longest attribute fields kept as a set; longer ones are decoded every time.
pub const MAX_SET_LEN: usize = 1024;

/// Bytes of metric prefixes kept per thread (a prefix holds the resource's and scope's
/// canonical attributes).
pub const MAX_PREFIX_BYTES: usize = 4 << 20;

/// The prefix id of a metric whose prefix did not fit: its points are not cached.
pub const NO_PREFIX: u32 = u32::MAX;

/// The attribute set id of a point whose attributes are not cached (0).
pub const NO_SET: u32 = 0;

/// One thread's cache; see the module docs.
#[derive(Default)]
pub struct KeyCache {
    limits: Option<AttributeLimits>,
    /// Canonical metric prefixes → id, their total length, and whether one did not fit.
    prefixes: HashMap<Vec<u8>, u32>,
    prefix_bytes: usize,
    prefix_refused: bool,
    /// Attribute fields by xxh3-128, and their total length.
    sets: IdMap<u128, KeptSet>,
    set_bytes: usize,
    /// Counts the times the sets started over: a view decoded in another generation holds
    /// set ids that now name other sets.
    generation: u64,
    keys: IdMap<(u32, u32), SeriesKey>,
}

/// Attribute fields that decoded, with where they were read (field number and recursion
/// budget, which decoding them again needs the same) and their id, from 1.
struct KeptSet {
    fields: Box<[u8]>,
    context: u64,
    id: u32,
}

impl KeyCache {
    /// Called before a request is decoded: starts the sets over once they are full (their
    /// ids then change, so the keys go too). Returns the generation the request's set ids
    /// belong to.
    pub fn begin_decode(&mut self) -> u64 {
        if self.sets.len() >= MAX_SETS || self.set_bytes >= MAX_SET_BYTES {
            self.start_over();
        }
        self.generation
    }

    /// Forgets every set and key: set ids handed out before are no longer valid.
    pub fn start_over(&mut self) {
        self.sets.clear();
        self.set_bytes = 0;
        self.keys.clear();
        self.generation += 1;
    }

    /// The generation of the set ids handed out now.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The id of attribute fields `fields` (xxh3-128 `digest`) read in `context` (field
    /// number and recursion budget) when they decoded before: they then decode again.
    pub fn set_of(&self, digest: u128, context: u64, fields: &[u8]) -> Option<u32> {
        match self.sets.get(&digest) {
            Some(kept) if kept.context == context && *kept.fields == *fields => Some(kept.id),
            _ => None,
        }
    }

    /// Keeps attribute fields that decoded; returns their id, or [`NO_SET`] when they are
    /// not kept: longer than [`MAX_SET_LEN`], the sets full (until the next request), or
    /// another set with the same digest.
    pub fn note_set(&mut self, digest: u128, context: u64, fields: &[u8]) -> u32 {
        let full = self.sets.len() >= MAX_SETS || self.set_bytes + fields.len() > MAX_SET_BYTES;
        if fields.len() > MAX_SET_LEN || full {
            return NO_SET;
        }
        let id = self.sets.len() as u32 + 1;
        match self.sets.entry(digest) {
            Entry::Vacant(e) => {
                e.insert(KeptSet {
                    fields: fields.into(),
                    context,
                    id,
                });
                self.set_bytes += fields.len();
                id
            }
            Entry::Occupied(_) => NO_SET,
        }
    }

    /// Called at the start of staging a request: starts the keys and prefixes over when the
    /// limits changed, the keys are full or a prefix did not fit in the last request, so that
    /// the prefix ids handed out stay valid for the whole request.
    pub fn begin_stage(&mut self, limits: AttributeLimits) {
        let full = self.keys.len() >= MAX_KEYS || self.prefix_refused;
        if self.limits != Some(limits) || full {
            self.prefixes.clear();
            self.prefix_bytes = 0;
            self.prefix_refused = false;
            self.keys.clear();
            self.limits = Some(limits);
        }
    }

    /// The id of a metric's canonical prefix, or [`NO_PREFIX`] once the prefixes kept hold
    /// [`MAX_PREFIX_BYTES`] (until the next request).
    pub fn prefix(&mut self, canonical: &[u8]) -> u32 {
        if let Some(&id) = self.prefixes.get(canonical) {
            return id;
        }
        if self.prefix_bytes + canonical.len() > MAX_PREFIX_BYTES {
            self.prefix_refused = true;
            return NO_PREFIX;
        }
        let id = self.prefixes.len() as u32;
        self.prefixes.insert(canonical.to_vec(), id);
        self.prefix_bytes += canonical.len();
        id
    }

    /// The key of attribute set `set` under prefix `prefix`, when known.
    pub fn get(&self, prefix: u32, set: u32) -> Option<SeriesKey> {
        if prefix == NO_PREFIX || set == NO_SET {
            return None;
        }
        self.keys.get(&(prefix, set)).copied()
    }

    /// Keeps the key of an accepted attribute set (nothing when either is not cached, or the
    /// keys are full until the next request).
    pub fn insert(&mut self, prefix: u32, set: u32, key: SeriesKey) {
        if prefix != NO_PREFIX && set != NO_SET && self.keys.len() < MAX_KEYS {
            self.keys.insert((prefix, set), key);
        }
    }

    /// Number of keys kept.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes of the metric prefixes kept.
    pub fn prefix_bytes(&self) -> usize {
        self.prefix_bytes
    }

    /// Number of attribute sets kept, and their bytes.
    pub fn sets(&self) -> (usize, usize) {
        (self.sets.len(), self.set_bytes)
    }
}

thread_local! {
    /// The cache of the thread that decodes and stages.
    pub static KEY_CACHE: RefCell<KeyCache> = RefCell::default();
}
