//! What a cut block is stored under, the dictionary its frames share, and the `trace_index`
//! rows that find its frames.

use crate::buffer::utc_day;
use crate::copy_binary::Tuple;
use crate::trace_ingest::{TraceId, TraceSummary};

/// The columns of a `trace_index` COPY tuple, in order (the writer names them in its COPY).
pub const INDEX_COLUMNS: [&str; 12] = [
    "trace_id",
    "block_id",
    "frame_offset",
    "frame_length",
    "start_time",
    "end_time",
    "service",
    "root_name",
    "status",
    "span_count",
    "attributes",
    "tenant",
];

/// A block's dictionary is at most this share of its traces' bytes: a block cut small
/// (by age, at a low rate) gets a smaller dictionary rather than none.
/// A dictionary holds bytes of traces of any tenant of the block; decompressing a frame with
/// it gives back only that frame's trace.
const TRACE_BYTES_PER_DICTIONARY_BYTE: usize = 8;
/// Below this size a dictionary scaled down to its block is not worth storing (unless the
/// setting itself asks for a smaller one).
const DICTIONARY_FLOOR_BYTES: usize = 4 << 10;

/// The content of the dictionary of a block whose traces (encoded, in frame order) are
/// `traces`: about `size` bytes (at most an eighth of the traces' bytes) of whole traces
/// taken at an even stride over the block, so that every tenant and service of the block is
/// in it in proportion to its bytes (frames are ordered by tenant, then trace id); empty when
/// the block is too small for one to pay.
/// zstd reads bytes that begin with its dictionary magic number as a full dictionary; an
/// encoded trace begins with the tag of `TracesData.resource_spans` (0x0a), never with it,
/// so the content alone is read as raw content when [`with_entropy_tables`] cannot add the
/// header.
pub fn sample_dictionary<'a>(
    traces: impl ExactSizeIterator<Item = &'a [u8]> + Clone,
    size: usize,
) -> Vec<u8> {
    let mut dictionary = Vec::new();
    let total: usize = traces.clone().map(<[u8]>::len).sum();
    let scaled = size.min(total / TRACE_BYTES_PER_DICTIONARY_BYTE);
    if scaled == 0 || scaled < size.min(DICTIONARY_FLOOR_BYTES) {
        return dictionary;
    }
    let size = scaled;
    // One trace in every `stride` gives about `size` bytes of the `total`.
    let stride = (total / size).max(1);
    for bytes in traces.step_by(stride) {
        let room = size - dictionary.len();
        dictionary.extend_from_slice(&bytes[..room.min(bytes.len())]);
        if dictionary.len() == size {
            break;
        }
    }
    dictionary
}

/// Traces of a block whose statistics give its dictionary entropy tables (see
/// [`with_entropy_tables`]): about 3 ms per block at level 3; 400 gave no smaller frames.
pub const ENTROPY_SAMPLES: usize = 100;
/// Room for the header and tables [`with_entropy_tables`] puts before the content (~150
/// bytes on the benchmark's traces).
const ENTROPY_HEADER_ROOM: usize = 4 << 10;

/// `content` (from [`sample_dictionary`]) made a full zstd dictionary: a header with the
/// Huffman and FSE tables of compressing `samples` (other traces of the block) at `level`,
/// then the content (zero-padded to 8 bytes when shorter). A frame of a few hundred bytes
/// compressed with it refers to those tables instead of describing its own, which is
/// smaller and skips building them per frame (on the benchmark's blocks: 7.9 % fewer bytes,
/// a block cut in two thirds of the time). The same content and samples give the same
/// bytes (zstd derives the header's id from the content), so a block cut again from the
/// same spans has the same key. `content` comes back unchanged when there are no samples,
/// and if zstd ever refuses (its documentation allows it for too few or too uniform
/// samples; none seen): frames are then compressed with the content alone, as before.
pub fn with_entropy_tables(content: Vec<u8>, samples: &[&[u8]], level: i32) -> Vec<u8> {
    use zstd::zstd_safe::zstd_sys::{ZDICT_finalizeDictionary, ZDICT_isError, ZDICT_params_t};
    if content.is_empty() || samples.is_empty() {
        return content;
    }
    let flat = samples.concat();
    let sizes: Vec<usize> = samples.iter().map(|s| s.len()).collect();
    let Ok(count) = u32::try_from(sizes.len()) else {
        return content;
    };
    let capacity = content.len() + ENTROPY_HEADER_ROOM;
    let mut out = vec![0u8; capacity];
    let params = ZDICT_params_t {
        compressionLevel: level,
        notificationLevel: 0,
        dictID: 0,
    };
    // SAFETY: every pointer comes from a live slice or Vec with the length passed beside it;
    // zstd writes at most `capacity` bytes into `out`, reads `content` and `flat` (whose
    // length is the sum of `sizes`), and keeps none of them after returning.
    let written = unsafe {
        ZDICT_finalizeDictionary(
            out.as_mut_ptr().cast(),
            capacity,
            content.as_ptr().cast(),
            content.len(),
            flat.as_ptr().cast(),
            sizes.as_ptr(),
            count,
            params,
        )
    };
    // SAFETY: a pure function of the returned code.
    if unsafe { ZDICT_isError(written) } != 0 || written > capacity {
        return content;
    }
    out.truncate(written);
    out
}

/// The content hash of a block: xxh3-128 of its frames and of the dictionary they were
/// compressed with (the same frames under another dictionary are other spans).
pub fn block_hash(data: &[u8], dictionary: &[u8]) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(data);
    hasher.update(dictionary);
    hasher.digest128()
}

/// `blocks/YYYY/MM/DD/HH/<content hash>.tgb`: the cut hour first, so that retention lists
/// and deletes whole days; the content hash last, so that a retried upload of the same block
/// writes the same object.
pub fn block_key(now_ns: i64, hash: u128) -> String {
    let (year, month, day) = civil_from_days(utc_day(now_ns));
    let hour = now_ns.rem_euclid(86_400_000_000_000) / 3_600_000_000_000;
    format!("blocks/{year:04}/{month:02}/{day:02}/{hour:02}/{hash:032x}.tgb")
}

/// A block's id in `trace_blocks` and in its index rows: the low 64 bits of its content hash,
/// so that a retried commit of the same block names the same row.
pub fn block_id(hash: u128) -> i64 {
    hash as i64
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// One (tenant, trace)'s frame in a block being cut; `tenant` indexes the block's tenants.
pub struct Frame {
    pub tenant: usize,
    pub trace_id: TraceId,
    pub offset: usize,
    pub length: usize,
    pub summary: TraceSummary,
}

/// One `trace_index` row, columns as in [`INDEX_COLUMNS`].
pub fn index_row(buf: &mut Vec<u8>, block_id: i64, tenant: &str, frame: &Frame) {
    let s = &frame.summary;
    let attributes: Vec<i32> = s.attributes.iter().copied().collect();
    Tuple::begin(buf, INDEX_COLUMNS.len() as i16)
        .bytea(&frame.trace_id)
        .int8(block_id)
        .int8(frame.offset as i64)
        .int8(frame.length as i64)
        .timestamptz_ns(s.start_ns)
        .timestamptz_ns(s.end_ns)
        .text(s.service())
        .opt_text(s.root_name.as_deref())
        .int4(i32::from(s.status))
        .int4(s.spans as i32)
        .int4_array(&attributes)
        .text(tenant);
}
