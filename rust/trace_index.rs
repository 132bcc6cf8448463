//! What a cut block is stored under, and the `trace_index` rows that find its frames.

use crate::buffer::utc_day;
use crate::copy_binary::Tuple;
use crate::trace_ingest::{TraceId, TraceSummary};

/// The columns of a `trace_index` COPY tuple, in order (the writer names them in its COPY).
pub const INDEX_COLUMNS: [&str; 12] = [
    "trace_id",
    "block_key",
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

/// `blocks/YYYY/MM/DD/HH/<xxh3-128 of the bytes>.tgb`: the cut hour first, so that retention
/// lists and deletes whole days; the content hash last, so that a retried upload of the same
/// block writes the same object.
pub fn block_key(now_ns: i64, data: &[u8]) -> String {
    let (year, month, day) = civil_from_days(utc_day(now_ns));
    let hour = now_ns.rem_euclid(86_400_000_000_000) / 3_600_000_000_000;
    let hash = xxhash_rust::xxh3::xxh3_128(data);
    format!("blocks/{year:04}/{month:02}/{day:02}/{hour:02}/{hash:032x}.tgb")
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
pub fn index_row(buf: &mut Vec<u8>, key: &str, tenant: &str, frame: &Frame) {
    let s = &frame.summary;
    let attributes: Vec<u64> = s.attributes.iter().map(|&h| h as u64).collect();
    Tuple::begin(buf, INDEX_COLUMNS.len() as i16)
        .bytea(&frame.trace_id)
        .text(key)
        .int8(frame.offset as i64)
        .int8(frame.length as i64)
        .timestamptz_ns(s.start_ns)
        .timestamptz_ns(s.end_ns)
        .text(s.service())
        .opt_text(s.root_name.as_deref())
        .int4(i32::from(s.status))
        .int4(s.spans as i32)
        .int8_array(&attributes)
        .text(tenant);
}
