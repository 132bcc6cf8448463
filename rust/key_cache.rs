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
//!
//! Sets are kept in the order they were first seen, their bytes one after the other, and a
//! set's key under its first prefix beside it. An exporter usually sends its series in the
//! same order export after export, so the set after the one a point had is tried first, bytes
//! compared (`find_set`): that walks the kept sets in memory order instead of hashing the
//! fields and reading a random slot of a table, which missed the CPU caches at every point. A
//! request whose points come in another order stops trying after a few misses.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_128;

use crate::attributes::AttributeLimits;
use crate::series::{IdMap, SeriesKey};

/// Keys kept per thread: 7/8 of 2¹⁷, the most a table of 2¹⁷ slots holds (25 bytes a slot,
/// 3.1 MiB).
pub const MAX_KEYS: usize = 7 << 14;

/// Attribute sets kept per thread (a table of 2¹⁶ slots of 32 bytes, 2 MiB, and 48 bytes
/// per set, 2.6 MiB, plus their bytes).
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

/// Missed guesses of the next set in one request after which `find_set` guesses only while
/// it guesses right more often than not.
const GUESS_MISSES_ALLOWED: u32 = 8;

/// One thread's cache; see the module docs.
#[derive(Default)]
pub struct KeyCache {
    limits: Option<AttributeLimits>,
    /// Canonical metric prefixes → id, their total length, and whether one did not fit.
    prefixes: HashMap<Vec<u8>, u32>,
    prefix_bytes: usize,
    prefix_refused: bool,
    /// Attribute set ids by the xxh3-128 of their fields.
    by_digest: IdMap<u128, u32>,
    /// The kept sets in the order they were kept: set `id` is `sets[id - 1]`.
    sets: Vec<KeptSet>,
    /// Their fields, one after the other.
    set_bytes: Vec<u8>,
    /// Counts the times the sets started over: a view decoded in another generation holds
    /// set ids that now name other sets.
    generation: u64,
    /// Keys of sets under another prefix than the one beside the set.
    keys: IdMap<(u32, u32), SeriesKey>,
    /// Keys kept, beside their sets and in `keys`.
    key_count: usize,
    /// Counts the times the keys were forgotten: a key beside a set is valid only in the
    /// generation it was kept in (from 1; a set's starts at 0).
    key_generation: u64,
    /// The set the last point had (`NO_SET` before any), and how the guesses that the next
    /// point has the next set went in this request.
    last_set: u32,
    guess_hits: u32,
    guess_misses: u32,
}

/// Attribute fields that decoded, with where they were read (field number and recursion
/// budget, which decoding them again needs the same), and the set's key under one prefix.
struct KeptSet {
    start: u32,
    len: u32,
    context: u64,
    key_generation: u64,
    key_prefix: u32,
    key: SeriesKey,
}

impl KeyCache {
    /// Called before a request is decoded: starts the sets over once they are full (their
    /// ids then change, so the keys go too). Returns the generation the request's set ids
    /// belong to.
    pub fn begin_decode(&mut self) -> u64 {
        if self.sets.len() >= MAX_SETS || self.set_bytes.len() >= MAX_SET_BYTES {
            self.start_over();
        }
        self.guess_hits = 0;
        self.guess_misses = 0;
        self.generation
    }

    /// Forgets every set and key: set ids handed out before are no longer valid.
    pub fn start_over(&mut self) {
        self.by_digest.clear();
        self.sets.clear();
        self.set_bytes.clear();
        self.last_set = NO_SET;
        self.forget_keys();
        self.generation += 1;
    }

    fn forget_keys(&mut self) {
        self.keys.clear();
        self.key_count = 0;
        self.key_generation += 1;
    }

    /// The generation of the set ids handed out now.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The id of attribute fields `fields` read in `context` (field number and recursion
    /// budget) when they decoded before: they then decode again. Else their xxh3-128, for
    /// [`note_set`](Self::note_set). The set after the last point's is tried first.
    pub fn find_set(&mut self, context: u64, fields: &[u8]) -> Result<u32, u128> {
        let guessing =
            self.guess_misses < GUESS_MISSES_ALLOWED || self.guess_hits > self.guess_misses;
        if guessing {
            if let Some(next) = self.sets.get(self.last_set as usize) {
                if next.context == context && self.fields_of(next) == fields {
                    self.guess_hits += 1;
                    self.last_set += 1;
                    return Ok(self.last_set);
                }
                self.guess_misses += 1;
            }
        }
        let digest = xxh3_128(fields);
        match self.set_of(digest, context, fields) {
            Some(id) => {
                self.last_set = id;
                Ok(id)
            }
            None => Err(digest),
        }
    }

    /// The id of attribute fields `fields` (xxh3-128 `digest`) read in `context` when they
    /// decoded before, by their digest alone.
    pub fn set_of(&self, digest: u128, context: u64, fields: &[u8]) -> Option<u32> {
        let id = *self.by_digest.get(&digest)?;
        let kept = &self.sets[id as usize - 1];
        (kept.context == context && self.fields_of(kept) == fields).then_some(id)
    }

    fn fields_of(&self, kept: &KeptSet) -> &[u8] {
        &self.set_bytes[kept.start as usize..(kept.start + kept.len) as usize]
    }

    /// Keeps attribute fields that decoded; returns their id, or [`NO_SET`] when they are
    /// not kept: longer than [`MAX_SET_LEN`], the sets full (until the next request), or
    /// another set with the same digest.
    pub fn note_set(&mut self, digest: u128, context: u64, fields: &[u8]) -> u32 {
        let used = self.set_bytes.len();
        let full = self.sets.len() >= MAX_SETS || used + fields.len() > MAX_SET_BYTES;
        if fields.len() > MAX_SET_LEN || full {
            return NO_SET;
        }
        let id = self.sets.len() as u32 + 1;
        match self.by_digest.entry(digest) {
            Entry::Vacant(e) => {
                e.insert(id);
            }
            Entry::Occupied(_) => return NO_SET,
        }
        if self.set_bytes.capacity() < used + fields.len() {
            // Doubling, but never past the budget.
            let want = (2 * self.set_bytes.capacity()).clamp(used + fields.len(), MAX_SET_BYTES);
            self.set_bytes.reserve_exact(want - used);
        }
        self.set_bytes.extend_from_slice(fields);
        self.sets.push(KeptSet {
            start: used as u32,
            len: fields.len() as u32,
            context,
            key_generation: 0,
            key_prefix: NO_PREFIX,
            key: SeriesKey {
                id: 0,
                fingerprint: 0,
            },
        });
        self.last_set = id;
        id
    }

    /// Called at the start of staging a request: starts the keys and prefixes over when the
    /// limits changed, the keys are full or a prefix did not fit in the last request, so that
    /// the prefix ids handed out stay valid for the whole request.
    pub fn begin_stage(&mut self, limits: AttributeLimits) {
        let full = self.key_count >= MAX_KEYS || self.prefix_refused;
        if self.limits != Some(limits) || full {
            self.prefixes.clear();
            self.prefix_bytes = 0;
            self.prefix_refused = false;
            self.forget_keys();
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
        match self.sets.get(set as usize - 1) {
            Some(kept)
                if kept.key_generation == self.key_generation && kept.key_prefix == prefix =>
            {
                Some(kept.key)
            }
            _ => self.keys.get(&(prefix, set)).copied(),
        }
    }

    /// Keeps the key of an accepted attribute set (nothing when either is not cached, or the
    /// keys are full until the next request): beside the set, unless it has one under
    /// another prefix already.
    pub fn insert(&mut self, prefix: u32, set: u32, key: SeriesKey) {
        if prefix == NO_PREFIX || set == NO_SET || self.key_count >= MAX_KEYS {
            return;
        }
        let generation = self.key_generation;
        if let Some(kept) = self.sets.get_mut(set as usize - 1) {
            if kept.key_generation != generation {
                (kept.key_generation, kept.key_prefix, kept.key) = (generation, prefix, key);
                self.key_count += 1;
                return;
            }
            if kept.key_prefix == prefix {
                kept.key = key;
                return;
            }
        }
        if self.keys.insert((prefix, set), key).is_none() {
            self.key_count += 1;
        }
    }

    /// Number of keys kept.
    pub fn len(&self) -> usize {
        self.key_count
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.key_count == 0
    }

    /// Bytes of the metric prefixes kept.
    pub fn prefix_bytes(&self) -> usize {
        self.prefix_bytes
    }

    /// Number of attribute sets kept, and their bytes.
    pub fn sets(&self) -> (usize, usize) {
        (self.sets.len(), self.set_bytes.len())
    }
}

thread_local! {
    /// The cache of the thread that decodes and stages.
    pub static KEY_CACHE: RefCell<KeyCache> = RefCell::default();
}
