//! `TraceCore`: accepted spans wait per tenant and trace until a block is cut (by size or
//! age); then each (tenant, trace) becomes one zstd frame, the frames one block, and every
//! frame one `trace_index` row carrying its tenant. A block takes every waiting span, so each
//! request lands in exactly one block and a block's commit covers whole spool records.

use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use zstd::zstd_safe::CParameter;

use crate::buffer::utc_day;
use crate::copy_binary::{write_header, write_trailer};
use crate::error::CoreError;
use crate::ingest::{lock, SeqLog};
use crate::trace_index::{
    block_hash, block_id, block_key, index_row, sample_dictionary, with_entropy_tables, Frame,
    ENTROPY_SAMPLES,
};
use crate::trace_ingest::{stage, StagedSpans, TraceId, TraceSummary};
use crate::trace_sampling::SamplingRatios;

/// The tenant of requests that name none, and of spool records written before tenants
/// existed (they carry an empty tenant).
pub const DEFAULT_TENANT: &str = "default";

/// When blocks are cut, and how hard frames are compressed (the Python `TraceSettings`).
#[derive(Clone, Copy, Debug)]
pub struct TraceSettings {
    /// A block is cut once the spans waiting for it reach this many bytes (their encoded
    /// size as clients sent them, before compression, so stored blocks are smaller).
    pub block_max_bytes: usize,
    /// ... or once the oldest of them has waited this long.
    pub block_max_age_ns: i64,
    pub zstd_level: i32,
    /// Size of the content of the dictionary a block's frames are compressed with: whole
    /// traces sampled across the block, up to this many bytes (and an eighth of the block's,
    /// so a small block gets a smaller one), after entropy tables drawn from other traces of
    /// the block. A trace of a few spans compressed alone repeats its resource, scope and
    /// attribute names; with the dictionary those are back-references (about 2.5 times
    /// smaller on the benchmark's traces). 0: no dictionary.
    pub dictionary_bytes: usize,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            block_max_bytes: 8 << 20,
            block_max_age_ns: 5_000_000_000,
            zstd_level: 3,
            dictionary_bytes: 256 << 10,
        }
    }
}

/// What one trace Export did.
#[derive(Debug)]
pub struct TraceIngestOutcome {
    /// Valid spans kept by sampling, queued for a block.
    pub accepted_spans: u64,
    /// Valid spans that sampling dropped: not an error, the client is answered success.
    pub sampled_out_spans: u64,
    pub rejected_spans: u64,
    pub error_message: String,
    /// Serialized `ExportTraceServiceResponse`.
    pub response: Vec<u8>,
    /// The request's spool sequence number.
    pub seq: u64,
}

/// A cut block: the object to store under `key`, and the index rows (a COPY stream for
/// `trace_index`) to commit once it is stored.
#[derive(Debug, Default)]
pub struct TraceBlock {
    pub key: String,
    /// The block's `trace_blocks` row, named by its index rows.
    pub id: i64,
    pub data: Vec<u8>,
    /// The dictionary every frame of the block was compressed with (entropy tables and
    /// content, or content alone), itself zstd-compressed; empty when the frames were
    /// compressed without one.
    pub dictionary: Vec<u8>,
    pub index_copy: Vec<u8>,
    pub traces: u64,
    pub spans: u64,
    /// Sorted distinct UTC days of the index rows.
    pub days: Vec<i64>,
    /// The spool sequence numbers of the requests whose spans are in this block.
    pub seqs: Vec<u64>,
}

/// The encoded `TracesData` fragments of one trace waiting for a block, and their summary.
type Waiting = (Vec<u8>, TraceSummary);

#[derive(Default)]
struct Pending {
    /// By tenant, then trace id: two tenants' spans of one trace id never share a frame.
    traces: HashMap<String, HashMap<TraceId, Waiting>>,
    bytes: usize,
    spans: u64,
    oldest_ns: Option<i64>,
    seqs: SeqLog,
}

/// Thread-safe: `ingest` runs on several decode threads; the lock is held only to append
/// already-encoded fragments.
pub struct TraceCore {
    settings: TraceSettings,
    pending: Mutex<Pending>,
    /// Replaced whole by `set_sampling`; each request stages under one snapshot.
    sampling: Mutex<Arc<SamplingRatios>>,
}

impl TraceCore {
    /// An empty core that keeps every span.
    pub fn new(settings: TraceSettings) -> Self {
        TraceCore {
            settings,
            pending: Mutex::default(),
            sampling: Mutex::default(),
        }
    }

    /// Decodes an `ExportTraceServiceRequest` of the default tenant and queues the valid
    /// spans sampling keeps for the next block, under the next spool sequence number.
    pub fn ingest(&self, bytes: &[u8], now_ns: i64) -> Result<TraceIngestOutcome, CoreError> {
        self.ingest_seq(bytes, now_ns, None, DEFAULT_TENANT)
    }

    /// Decodes a request of `tenant` (empty: the default tenant) and queues the valid spans
    /// sampling keeps under spool sequence number `given` (a replayed record) or the next
    /// one; the block that takes them lists it.
    pub fn ingest_seq(
        &self,
        bytes: &[u8],
        now_ns: i64,
        given: Option<u64>,
        tenant: &str,
    ) -> Result<TraceIngestOutcome, CoreError> {
        let tenant = if tenant.is_empty() {
            DEFAULT_TENANT
        } else {
            tenant
        };
        let mut staged = stage(bytes, &self.sampling())?;
        let fragments = mem::take(&mut staged.fragments);
        let seq = {
            let mut guard = lock(&self.pending);
            let pending = &mut *guard;
            let seq = pending.seqs.note(given);
            pending.oldest_ns.get_or_insert(now_ns);
            pending.spans += staged.accepted;
            if !fragments.is_empty() {
                // Looked up first: a tenant's name is copied only when its first trace waits.
                if !pending.traces.contains_key(tenant) {
                    pending.traces.insert(tenant.to_owned(), HashMap::new());
                }
                let by_trace = pending.traces.get_mut(tenant).expect("inserted above");
                for fragment in fragments {
                    pending.bytes += fragment.summary.span_bytes;
                    let (data, summary) = by_trace.entry(fragment.trace_id).or_default();
                    data.extend_from_slice(&fragment.data);
                    summary.absorb(fragment.summary);
                }
            }
            seq
        };
        Ok(outcome(&staged, seq))
    }

    /// Decodes and checks a request as `ingest` does (sampling included), without queueing
    /// anything: it gets a sequence number and waits in the spool, to be ingested later under
    /// it.
    pub fn check(&self, bytes: &[u8]) -> Result<TraceIngestOutcome, CoreError> {
        let staged = stage(bytes, &self.sampling())?;
        let seq = lock(&self.pending).seqs.defer();
        Ok(outcome(&staged, seq))
    }

    /// Replaces the sampling ratios; requests staged from now on use them.
    pub fn set_sampling(&self, ratios: SamplingRatios) {
        *lock(&self.sampling) = Arc::new(ratios);
    }

    fn sampling(&self) -> Arc<SamplingRatios> {
        Arc::clone(&lock(&self.sampling))
    }

    /// Sequence numbers given out from now on start at `next` or above.
    pub fn start_seqs_at(&self, next: u64) {
        lock(&self.pending).seqs.start_at(next);
    }

    /// Whether a block should be cut now (size or age reached).
    pub fn block_due(&self, now_ns: i64) -> bool {
        let pending = lock(&self.pending);
        pending.bytes >= self.settings.block_max_bytes
            || pending
                .oldest_ns
                .is_some_and(|t| now_ns - t >= self.settings.block_max_age_ns)
    }

    /// Spans accepted and not yet in a block.
    pub fn pending_spans(&self) -> u64 {
        lock(&self.pending).spans
    }

    /// Cuts a block of every waiting trace (when one is due, or always with `force`); `None`
    /// when nothing waits or nothing is due. A block is at least `block_max_bytes` (before
    /// compression) or `block_max_age` old, plus what arrived since the last check.
    pub fn take_block(&self, now_ns: i64, force: bool) -> Option<TraceBlock> {
        if !force && !self.block_due(now_ns) {
            return None;
        }
        let (traces, bytes, spans, seqs) = {
            let mut pending = lock(&self.pending);
            let seqs = pending.seqs.take();
            pending.oldest_ns = None;
            (
                mem::take(&mut pending.traces),
                mem::replace(&mut pending.bytes, 0),
                mem::replace(&mut pending.spans, 0),
                seqs,
            )
        };
        if traces.is_empty() && seqs.is_empty() {
            return None;
        }
        // Frames in (tenant, trace id) order: a block's bytes depend only on its spans.
        let mut tenants: Vec<(String, HashMap<TraceId, Waiting>)> = traces.into_iter().collect();
        tenants.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut waiting: Vec<(usize, TraceId, Waiting)> = Vec::new();
        for (tenant, (_, by_trace)) in tenants.iter_mut().enumerate() {
            let start = waiting.len();
            waiting.extend(
                mem::take(by_trace)
                    .into_iter()
                    .map(|(id, w)| (tenant, id, w)),
            );
            waiting[start..].sort_unstable_by_key(|t| t.1);
        }
        let traces = || waiting.iter().map(|(_, _, (bytes, _))| bytes.as_slice());
        let content = sample_dictionary(traces(), self.settings.dictionary_bytes);
        // Samples spread over the block like the content, from half a stride in (with
        // other strides, so they are mostly other traces; below 100 traces, every trace).
        let stride = (waiting.len() / ENTROPY_SAMPLES).max(1);
        let samples: Vec<&[u8]> = traces().skip(stride / 2).step_by(stride).collect();
        let level = self.settings.zstd_level;
        let dictionary = with_entropy_tables(content, &samples, level);
        let mut data = Vec::with_capacity(bytes / 3);
        let mut frames = Vec::with_capacity(waiting.len());
        // One compression context for every frame of the block: creating one per frame
        // costs more than compressing a small trace. Frames do not name their dictionary
        // (4 bytes each): the index row that finds a frame also finds its block's.
        let mut compressor = zstd::bulk::Compressor::with_dictionary(level, &dictionary)
            .and_then(|mut c| c.set_parameter(CParameter::DictIdFlag(false)).map(|()| c))
            .expect("zstd level checked by TraceSettings");
        for (tenant, trace_id, (bytes, summary)) in waiting {
            let offset = data.len();
            // In-memory compression of a Vec cannot fail short of allocation failure.
            let frame = compressor
                .compress(&bytes)
                .expect("zstd compression into memory");
            data.extend_from_slice(&frame);
            frames.push(Frame {
                tenant,
                trace_id,
                offset,
                length: frame.len(),
                summary,
            });
        }
        let dictionary = if dictionary.is_empty() {
            dictionary
        } else {
            zstd::bulk::compress(&dictionary, self.settings.zstd_level)
                .expect("zstd compression into memory")
        };
        let hash = block_hash(&data, &dictionary);
        let id = block_id(hash);
        let mut index_copy = Vec::with_capacity(frames.len() * 160);
        write_header(&mut index_copy);
        let mut days = Vec::new();
        for frame in &frames {
            index_row(&mut index_copy, id, &tenants[frame.tenant].0, frame);
            days.push(utc_day(frame.summary.start_ns));
        }
        write_trailer(&mut index_copy);
        days.sort_unstable();
        days.dedup();
        Some(TraceBlock {
            key: block_key(now_ns, hash),
            id,
            data,
            dictionary,
            index_copy,
            traces: frames.len() as u64,
            spans,
            days,
            seqs,
        })
    }
}

/// What an ingest or check of `staged` answers.
fn outcome(staged: &StagedSpans, seq: u64) -> TraceIngestOutcome {
    let error_message = match (&staged.first_error, staged.rejected) {
        (Some(reason), n) => format!("{n} spans rejected; first: {reason}"),
        (None, _) => String::new(),
    };
    let response = ExportTraceServiceResponse {
        partial_success: (staged.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: staged.rejected as i64,
            error_message: error_message.clone(),
        }),
    };
    TraceIngestOutcome {
        accepted_spans: staged.accepted,
        sampled_out_spans: staged.sampled_out,
        rejected_spans: staged.rejected,
        error_message,
        response: response.encode_to_vec(),
        seq,
    }
}
