//! The byte format of a `TDigest` (version 1), as stored in rollup rows.
//!
//! All integers and floats are little-endian; a digest is always compressed (no unmerged
//! buffer) before it is written, and decoding then encoding gives the same bytes.
//!
//! | offset   | size   | field                                                        |
//! |----------|--------|--------------------------------------------------------------|
//! | 0        | 1      | format version, `u8` = 1                                     |
//! | 1        | 8      | compression δ, `f64` (10 ≤ δ ≤ 10,000)                       |
//! | 9        | 8      | count, `u64` (number of values)                              |
//! | 17       | 8      | sum of the values, `f64`                                     |
//! | 25       | 8      | min, `f64` (`+inf` when count = 0)                           |
//! | 33       | 8      | max, `f64` (`-inf` when count = 0)                           |
//! | 41       | 4      | n, number of centroids, `u32`                                |
//! | 45       | 16 · n | n × (mean `f64`, weight `u64`), sorted by mean, non-decreasing |
//!
//! A digest of `n` centroids takes `45 + 16·n` bytes (at most about `45 + 16·δ`; 45 when
//! empty). Decoding refuses, with `CoreError::DigestDecode`: an unknown version, truncated
//! input, trailing bytes, a compression out of range, a NaN sum, a non-finite or unsorted
//! mean, a zero weight, weights that do not add up to count, a mean outside `[min, max]`,
//! and an empty digest that is not exactly `count = 0, sum = 0, min = +inf, max = -inf, n = 0`.
//!
//! The header says how long a digest is, so digests written back to back (PostgreSQL's
//! `string_agg(digest, '')` of many rollup rows) split apart again: [`split_concatenated`].

use crate::error::CoreError;
use crate::tdigest::{check_compression, Centroid, TDigest};

/// The version `to_bytes` writes and the only one `from_bytes` reads.
pub const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 45;
const CENTROID_LEN: usize = 16;

impl TDigest {
    /// The digest in format version 1 (see `tdigest_codec`).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.with_compressed(|d| {
            let mut out = Vec::with_capacity(HEADER_LEN + CENTROID_LEN * d.centroids.len());
            out.push(FORMAT_VERSION);
            out.extend_from_slice(&d.compression.to_le_bytes());
            out.extend_from_slice(&d.count.to_le_bytes());
            out.extend_from_slice(&d.sum.to_le_bytes());
            out.extend_from_slice(&d.min.to_le_bytes());
            out.extend_from_slice(&d.max.to_le_bytes());
            // At most about δ ≤ 10,000 centroids, far below u32::MAX.
            out.extend_from_slice(&(d.centroids.len() as u32).to_le_bytes());
            for c in &d.centroids {
                out.extend_from_slice(&c.mean.to_le_bytes());
                out.extend_from_slice(&c.weight.to_le_bytes());
            }
            out
        })
    }

    /// Reads a digest written by `to_bytes`, checking every invariant the queries rely on.
    pub fn from_bytes(bytes: &[u8]) -> Result<TDigest, CoreError> {
        decode(bytes).map_err(CoreError::DigestDecode)
    }
}

/// Splits digests written back to back into one slice each (each still to be checked by
/// `from_bytes`); an empty input holds none.
pub fn split_concatenated(mut bytes: &[u8]) -> Result<Vec<&[u8]>, CoreError> {
    let mut parts = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < HEADER_LEN {
            return Err(CoreError::DigestDecode(format!(
                "truncated: {} bytes left after {} digests, a header is {HEADER_LEN}",
                bytes.len(),
                parts.len()
            )));
        }
        let n = u32::from_le_bytes(bytes[41..45].try_into().expect("4 bytes")) as usize;
        let len = HEADER_LEN.saturating_add(n.saturating_mul(CENTROID_LEN));
        if bytes.len() < len {
            return Err(CoreError::DigestDecode(format!(
                "truncated: digest {} declares {n} centroids, {} bytes are left",
                parts.len(),
                bytes.len()
            )));
        }
        let (part, rest) = bytes.split_at(len);
        parts.push(part);
        bytes = rest;
    }
    Ok(parts)
}

fn decode(bytes: &[u8]) -> Result<TDigest, String> {
    let Some(&version) = bytes.first() else {
        return Err("truncated: empty input".into());
    };
    if version != FORMAT_VERSION {
        return Err(format!(
            "unknown format version {version} (this build reads {FORMAT_VERSION})"
        ));
    }
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "truncated: {} bytes, the header alone is {HEADER_LEN}",
            bytes.len()
        ));
    }
    let mut r = Reader { bytes, pos: 1 };
    let compression = r.f64();
    let count = r.u64();
    let sum = r.f64();
    let min = r.f64();
    let max = r.f64();
    let n = r.u32() as usize;
    let body = bytes.len() - HEADER_LEN;
    // Compared before allocating, so a forged `n` cannot make us reserve gigabytes.
    if body < n * CENTROID_LEN {
        return Err(format!(
            "truncated: {n} centroids need {} bytes after the header, got {body}",
            n * CENTROID_LEN
        ));
    }
    if body > n * CENTROID_LEN {
        return Err(format!(
            "{} trailing bytes after {n} centroids",
            body - n * CENTROID_LEN
        ));
    }
    check_compression(compression)?;
    if sum.is_nan() {
        return Err("sum is NaN".into());
    }
    if count == 0 {
        if n != 0 || sum != 0.0 || min != f64::INFINITY || max != f64::NEG_INFINITY {
            return Err("an empty digest must have no centroids, sum 0, min +inf, max -inf".into());
        }
    } else if !(min.is_finite() && max.is_finite() && min <= max) {
        return Err(format!(
            "min {min} and max {max} are not finite with min <= max"
        ));
    }
    let mut centroids = Vec::with_capacity(n);
    let mut total: u64 = 0;
    for i in 0..n {
        let c = Centroid {
            mean: r.f64(),
            weight: r.u64(),
        };
        if !c.mean.is_finite() {
            return Err(format!("centroid {i} has a non-finite mean {}", c.mean));
        }
        if c.weight == 0 {
            return Err(format!("centroid {i} has weight 0"));
        }
        if let Some(prev) = centroids.last().map(|p: &Centroid| p.mean) {
            if c.mean < prev {
                return Err(format!(
                    "centroids are not sorted by mean: {} after {prev} at {i}",
                    c.mean
                ));
            }
        }
        if c.mean < min || c.mean > max {
            return Err(format!(
                "centroid {i} mean {} is outside [min {min}, max {max}]",
                c.mean
            ));
        }
        total = total
            .checked_add(c.weight)
            .ok_or_else(|| "centroid weights overflow u64".to_string())?;
        centroids.push(c);
    }
    if total != count {
        return Err(format!(
            "centroid weights add up to {total}, count is {count}"
        ));
    }
    let mut digest = TDigest::with_valid_compression(compression);
    digest.centroids = centroids;
    digest.count = count;
    digest.sum = sum;
    digest.min = min;
    digest.max = max;
    Ok(digest)
}

/// Reads fixed-size little-endian fields; the caller checked the length up front.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let out = self.bytes[self.pos..self.pos + N]
            .try_into()
            .expect("length checked before reading");
        self.pos += N;
        out
    }
    fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
}
