//! `MetricsCore`: the shared, thread-safe state behind the Python class of the same name.

use std::mem;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use crate::admission::{Admitted, ShardOrder};
use crate::buffer::{utc_day, RowBuffer, SeriesRows, Shard};
use crate::decode;
use crate::error::CoreError;
use crate::otlp_decode;
use crate::reject::{encode_response, Reason, Reject};
use crate::rollup_rows::HourWindows;
use crate::rows::{self, SeriesRow};
use crate::staged::{self, Limits, Payload, StagedRequest, ROW_TABLES};
use crate::tenants::{SeriesBudget, SeriesLimits, Tenants, DEFAULT_TENANT};
use crate::windows::{ReplayFilter, RollupSettings};

/// Number of shards; a power of two, well above the number of ingest threads.
pub(crate) const SHARDS: usize = 16;

pub(crate) fn shard_of(id: u64) -> usize {
    // The top bits: `IdHasher` inside a shard mixes all bits, so this does not skew the maps.
    (id >> 60) as usize % SHARDS
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves plain buffers behind, still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one `ingest` call did.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    pub accepted_points: u64,
    pub rejected_points: u64,
    pub rejected_by_reason: Vec<(&'static str, u64)>,
    pub error_message: String,
    /// Serialized `ExportMetricsServiceResponse`.
    pub response: Vec<u8>,
    /// The request's spool sequence number.
    pub seq: u64,
}

/// Spool sequence numbers: the next one to give out, and those of the requests buffered
/// since the last `take_batch`. Numbers are given out only to requests that were buffered,
/// so they have no gaps.
#[derive(Debug)]
pub struct SeqLog {
    next: u64,
    taken: Vec<u64>,
}

impl Default for SeqLog {
    fn default() -> Self {
        SeqLog {
            next: 1,
            taken: Vec::new(),
        }
    }
}

impl SeqLog {
    /// Notes a buffered request: `given` when it is replayed from the spool, else the next
    /// number.
    pub fn note(&mut self, given: Option<u64>) -> u64 {
        let seq = given.unwrap_or(self.next);
        self.next = self.next.max(seq + 1);
        self.taken.push(seq);
        seq
    }

    /// Gives out the next number to a request that is not buffered now (it waits in the
    /// spool and is ingested later under this number).
    pub fn defer(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        seq
    }

    /// The numbers noted since the last call.
    pub fn take(&mut self) -> Vec<u64> {
        mem::take(&mut self.taken)
    }

    /// Numbers given out from now on start at `next` or above.
    pub fn start_at(&mut self, next: u64) {
        self.next = self.next.max(next);
    }
}

/// Everything buffered since the previous `take_batch`, encoded.
#[derive(Debug, Default)]
pub struct Batch {
    pub series_copy: Vec<u8>,
    pub point_chunks_copy: Vec<u8>,
    pub histogram_chunks_copy: Vec<u8>,
    pub exp_histogram_points_copy: Vec<u8>,
    pub summary_points_copy: Vec<u8>,
    /// Closed windows and hours, one COPY stream for the `rollups` table.
    pub rollups_copy: Vec<u8>,
    pub window_rollup_rows: u64,
    pub hour_rollup_rows: u64,
    /// Ids of the series first seen in this batch (for `forget_series`).
    pub new_series_ids: Vec<u64>,
    /// The spool sequence numbers of the requests whose points are in this batch.
    pub seqs: Vec<u64>,
    /// The lowest sequence number holding data of a window or hour still open after this
    /// batch (`u64::MAX` when none): a restart replays rollups from there.
    pub open_from_seq: u64,
    pub points: u64,
    pub chunk_rows: u64,
    pub histogram_chunk_rows: u64,
    pub exp_histogram_rows: u64,
    pub summary_rows: u64,
    /// Sorted distinct UTC days of the point and rollup rows (the `series` table is not
    /// partitioned).
    pub days: Vec<i64>,
}

/// Decodes requests and buffers their points until `take_batch`.
///
/// Concurrency: `ingest` runs on many threads at once. Decoding, validation, hashing and the
/// encoding of exponential histogram/summary rows happen without any lock. The appends then
/// take:
/// - `gate` for reading (shared: ingests never wait for each other on it). `take_batch` takes it
///   for writing only to swap the buffers out, so every request lands entirely in one batch.
/// - one shard `Mutex` at a time, for the shards the request's series fall in (shard = top bits
///   of the series id). Within a shard, the registry check-and-insert, the chunk append
///   (Gauge, Sum and histogram chunks) and the update of the point's open window are one
///   step, so a series is `New` for exactly one request.
/// - the small per-table `Mutex` of each row buffer, for a `memcpy` of pre-encoded tuples.
pub struct MetricsCore {
    pub(crate) limits: Limits,
    /// Read by every window update; written only when the window length changes, which
    /// therefore waits for the updates under way.
    pub(crate) rollups: RwLock<RollupSettings>,
    pub(crate) tenants: Tenants,
    pub(crate) series_limits: RwLock<SeriesLimits>,
    /// Arrival time of the last sweep for idle series (`i64::MIN` before the first).
    pub(crate) last_sweep_ns: AtomicI64,
    /// The latest arrival time seen: the window it falls in is open, or about to be.
    pub(crate) latest_now_ns: AtomicI64,
    /// Only `take_batch` uses it (under the write gate).
    pub(crate) hours: Mutex<HourWindows>,
    pub(crate) gate: RwLock<()>,
    pub(crate) shards: Vec<Mutex<Shard>>,
    /// Indexed by `RowTable`.
    pub(crate) tables: [Mutex<RowBuffer>; ROW_TABLES],
    pub(crate) series: Mutex<SeriesRows>,
    pub(crate) buffered_points: AtomicU64,
    pub(crate) seqs: Mutex<SeqLog>,
    /// Benchmarks only: points skip their windows, to show what windowing costs
    /// (`bench_api::core_without_windows`).
    #[cfg(feature = "bench-internals")]
    pub(crate) skip_windows: bool,
}

impl MetricsCore {
    /// An empty core.
    pub fn new(limits: Limits, rollups: RollupSettings) -> Self {
        MetricsCore {
            limits,
            rollups: RwLock::new(rollups),
            tenants: Tenants::default(),
            series_limits: RwLock::default(),
            last_sweep_ns: AtomicI64::new(i64::MIN),
            latest_now_ns: AtomicI64::new(i64::MIN),
            hours: Mutex::default(),
            gate: RwLock::new(()),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            tables: Default::default(),
            series: Mutex::default(),
            buffered_points: AtomicU64::new(0),
            seqs: Mutex::default(),
            #[cfg(feature = "bench-internals")]
            skip_windows: false,
        }
    }

    /// Whether accepted points go into their windows: always, except in a benchmark's core.
    #[cfg(not(feature = "bench-internals"))]
    pub(crate) fn windows_enabled(&self) -> bool {
        true
    }

    #[cfg(feature = "bench-internals")]
    pub(crate) fn windows_enabled(&self) -> bool {
        !self.skip_windows
    }

    /// The limits this core applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes `bytes` (an `ExportMetricsServiceRequest`) and buffers every valid point
    /// for the default tenant, under the next spool sequence number.
    pub fn ingest(&self, bytes: &[u8], now_ns: i64) -> Result<IngestOutcome, CoreError> {
        self.ingest_seq(bytes, now_ns, None)
    }

    /// [`ingest_as`](Self::ingest_as) for the default tenant.
    pub fn ingest_seq(
        &self,
        bytes: &[u8],
        now_ns: i64,
        given: Option<u64>,
    ) -> Result<IngestOutcome, CoreError> {
        self.ingest_as(DEFAULT_TENANT, bytes, now_ns, given)
    }

    /// Decodes `bytes`, sent for `tenant`, and buffers every valid point, under spool
    /// sequence number `given` (a replayed record) or the next one; the next batch lists it.
    /// Points of series that would take the tenant past its active-series limit are
    /// rejected, except in a replayed record (it was acknowledged already).
    pub fn ingest_as(
        &self,
        tenant: &str,
        bytes: &[u8],
        now_ns: i64,
        given: Option<u64>,
    ) -> Result<IngestOutcome, CoreError> {
        self.ingest_limited(tenant, bytes, now_ns, given, given.is_none())
    }

    /// [`Self::ingest_as`], with the active-series limit applied (`limited`) or not whatever
    /// `given` is: a deferred request, answered from [`Self::check_as`] and ingested later
    /// under the number `check_as` gave it, meets the limit as its answer said.
    pub fn ingest_limited(
        &self,
        tenant: &str,
        bytes: &[u8],
        now_ns: i64,
        given: Option<u64>,
        limited: bool,
    ) -> Result<IngestOutcome, CoreError> {
        let mut spare = Vec::new();
        let view = otlp_decode::decode_request_lazy(bytes, &mut spare)?;
        let mut staged = decode::stage_request(view, tenant, now_ns, &self.limits);
        let (index, slot) = self.tenants.intern(tenant);
        staged.tenant = index;
        self.note_arrival(now_ns);
        let limit = self.series_limit(tenant);
        let mut budget = SeriesBudget::new(&slot, limit, !limited, false);
        let (admitted, seq) = {
            let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
            // Given out first, so the windows know it; the gate keeps it in this batch.
            let seq = lock(&self.seqs).note(given);
            let admitted = self.admit(&staged, seq, now_ns, &mut budget);
            self.append_rows(&staged, &admitted.refused);
            staged.decode_lazy_attributes(&admitted.new_series);
            self.append_series(&staged, &admitted.new_series, now_ns);
            let accepted = (staged.points.len() - admitted.refused.len()) as u64;
            self.buffered_points.fetch_add(accepted, Ordering::Relaxed);
            (admitted, seq)
        };
        Ok(self.outcome(&mut staged, &admitted, tenant, limit, seq))
    }

    /// Decodes and checks `bytes` as `ingest` does, for the default tenant, without
    /// buffering anything.
    pub fn check(&self, bytes: &[u8], now_ns: i64) -> Result<IngestOutcome, CoreError> {
        self.check_as(DEFAULT_TENANT, bytes, now_ns)
    }

    /// Decodes and checks `bytes` as `ingest_as` does (the active-series limit included),
    /// without buffering or recording anything: the request gets a sequence number and waits
    /// in the spool, to be ingested later under it.
    pub fn check_as(
        &self,
        tenant: &str,
        bytes: &[u8],
        now_ns: i64,
    ) -> Result<IngestOutcome, CoreError> {
        let mut spare = Vec::new();
        let view = otlp_decode::decode_request_lazy(bytes, &mut spare)?;
        let mut staged = decode::stage_request(view, tenant, now_ns, &self.limits);
        let (index, slot) = self.tenants.intern(tenant);
        staged.tenant = index;
        self.note_arrival(now_ns);
        let limit = self.series_limit(tenant);
        let mut budget = SeriesBudget::new(&slot, limit, false, true);
        let admitted = self.judge(&staged, now_ns, &mut budget);
        let seq = lock(&self.seqs).defer();
        Ok(self.outcome(&mut staged, &admitted, tenant, limit, seq))
    }

    /// The summary of an ingest or check: staging rejections plus the points the registry
    /// refused.
    fn outcome(
        &self,
        staged: &mut StagedRequest<'_>,
        admitted: &Admitted,
        tenant: &str,
        limit: Option<u64>,
        seq: u64,
    ) -> IngestOutcome {
        let collision = Reject::new(
            Reason::SeriesIdCollision,
            "series id already used by another series",
        );
        for &i in &admitted.collided {
            let name = staged.metric(staged.points[i].origin).name;
            staged.rejections.add(collision, 1, name);
        }
        if let Some(&first) = admitted.limited.first() {
            let n = admitted.limited.len();
            let detail = format!(
                "tenant {tenant} is at its limit of {} active series: {n} points of new \
                 series rejected",
                limit.unwrap_or(0)
            );
            let name = staged.metric(staged.points[first].origin).name;
            staged
                .rejections
                .add_detailed(Reason::SeriesLimit, n as u64, name, detail);
        }
        let rejected = staged.rejections.total();
        let error_message = staged.rejections.message(staged.total_points);
        IngestOutcome {
            accepted_points: (staged.points.len() - admitted.refused.len()) as u64,
            rejected_points: rejected,
            rejected_by_reason: staged.rejections.by_reason(),
            response: encode_response(rejected, &error_message),
            error_message,
            seq,
        }
    }

    /// Sequence numbers given out from now on start at `next` or above (after a restart:
    /// past every number the spool and the committed checkpoint know).
    pub fn start_seqs_at(&self, next: u64) {
        lock(&self.seqs).start_at(next);
    }

    /// Replays spool record `seq`, whose raw points a committed batch already holds: its
    /// points only go back into the windows and hours that `filter` says were still open.
    /// The request was accepted when it was first ingested, so its rejections are not
    /// reported again.
    pub fn replay_rollups(
        &self,
        tenant: &str,
        bytes: &[u8],
        now_ns: i64,
        seq: u64,
        filter: &ReplayFilter,
    ) -> Result<(), CoreError> {
        let mut spare = Vec::new();
        let view = otlp_decode::decode_request_lazy(bytes, &mut spare)?;
        let mut staged = decode::stage_request(view, tenant, now_ns, &self.limits);
        staged.tenant = self.tenants.intern(tenant).0;
        let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        let rollups = self.rollups.read().unwrap_or_else(PoisonError::into_inner);
        for (s, run) in ShardOrder::of(&staged).runs() {
            let mut shard = lock(&self.shards[s]);
            for &i in run {
                shard.windows.add(&staged, i, &rollups, seq, Some(filter));
            }
        }
        Ok(())
    }

    /// Appends the pre-encoded exponential histogram and summary rows.
    fn append_rows(&self, staged: &StagedRequest, refused: &[usize]) {
        let mut counts = [0u64; ROW_TABLES];
        let mut days: [Vec<i64>; ROW_TABLES] = Default::default();
        let mut filtered: [Vec<u8>; ROW_TABLES] = Default::default();
        let any_row_refused = refused
            .iter()
            .any(|&i| matches!(staged.points[i].payload, Payload::Row { .. }));
        for (i, p) in staged.points.iter().enumerate() {
            let Payload::Row { table, start, end } = p.payload else {
                continue;
            };
            if any_row_refused {
                if refused.binary_search(&i).is_ok() {
                    continue;
                }
                // Rare: rebuild the table's tuples without the refused points.
                let t = table as usize;
                filtered[t].extend_from_slice(&staged.rows[t][start as usize..end as usize]);
            }
            counts[table as usize] += 1;
            let day = utc_day(p.time_ns);
            if days[table as usize].last() != Some(&day) {
                days[table as usize].push(day);
            }
        }
        for t in 0..ROW_TABLES {
            if counts[t] == 0 {
                continue;
            }
            let tuples = if any_row_refused {
                &filtered[t]
            } else {
                &staged.rows[t]
            };
            let mut table = lock(&self.tables[t]);
            table.append(tuples, counts[t]);
            days[t].iter().for_each(|&d| table.add_day(d));
        }
    }

    /// Encodes and appends the `series` rows of the series first seen in this request.
    fn append_series(&self, staged: &StagedRequest, new_series: &[usize], now_ns: i64) {
        if new_series.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        let mut ids = Vec::with_capacity(new_series.len());
        let tenant_name = self.tenants.name(staged.tenant);
        for &i in new_series {
            let p = &staged.points[i];
            let metric = staged.metric(p.origin);
            let (resource, scope) = staged.resource_and_scope(p.origin);
            let kind = metric
                .data
                .expect("staged points come from metrics with data");
            let shape =
                staged::metric_shape(metric, kind).expect("staged metrics have a valid shape");
            let row = SeriesRow {
                view: &staged.view,
                tenant: &tenant_name,
                key: p.key,
                metric_name: metric.name,
                shape,
                unit: metric.unit,
                description: metric.description,
                resource,
                scope,
                attributes: staged.point_attributes(p.origin),
                first_seen_ns: now_ns,
            };
            rows::series_row(&mut buf, &row);
            ids.push(p.key.id);
        }
        let mut series = lock(&self.series);
        series.rows.append(&buf, ids.len() as u64);
        series.ids.extend_from_slice(&ids);
    }
}
