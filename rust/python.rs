//! The Python surface: thin `#[pyclass]` wrappers over the pure-Rust core, the exception
//! hierarchy, and the `CoreError` → `PyErr` mapping. No logic lives here. The `TDigest`
//! wrapper is in `python_tdigest.rs` (re-exported here), to keep files short.

use std::collections::HashMap;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType};

use crate::error::CoreError;
use crate::ingest;
use crate::staged::Limits;
use crate::tenants::SeriesLimits;
use crate::windows::{ReplayFilter, RollupSettings as Settings, NS_PER_SECOND};

pub use crate::python_payload::CopyPayload;
pub use crate::python_tdigest::TDigest;

create_exception!(
    tidegate._core,
    TidegateError,
    PyException,
    "Base class of every error raised by the Rust core."
);

static DECODE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `DecodeError(TidegateError, ValueError)`. `create_exception!` takes a single base, so the
/// class is made by calling `type(name, bases, namespace)`, exactly as a `class` statement
/// would.
fn decode_error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    let ty = DECODE_ERROR.get_or_try_init(py, || -> PyResult<_> {
        let bases = PyTuple::new(
            py,
            [
                py.get_type::<TidegateError>(),
                py.get_type::<PyValueError>(),
            ],
        )?;
        let namespace = PyDict::new(py);
        namespace.set_item("__module__", "tidegate._core")?;
        namespace.set_item(
            "__doc__",
            "Bytes given to the core (an OTLP request, a serialized t-digest) are not \
             decodable; nothing of them was accepted.",
        )?;
        let ty = py
            .get_type::<PyType>()
            .call1(("DecodeError", bases, namespace))?;
        Ok(ty.cast_into::<PyType>()?.unbind())
    })?;
    Ok(ty.bind(py))
}

impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        let message = err.to_string();
        match err {
            CoreError::Decode(_) => Python::attach(|py| match decode_error_type(py) {
                Ok(ty) => PyErr::from_type(ty.clone(), message),
                Err(e) => e,
            }),
            CoreError::DigestDecode(_) => Python::attach(|py| match decode_error_type(py) {
                Ok(ty) => PyErr::from_type(ty.clone(), message),
                Err(e) => e,
            }),
            CoreError::DigestArgument(_) => PyValueError::new_err(message),
            CoreError::TraceDecode(_) | CoreError::FrameDecode(_) => {
                Python::attach(|py| match decode_error_type(py) {
                    Ok(ty) => PyErr::from_type(ty.clone(), message),
                    Err(e) => e,
                })
            }
        }
    }
}

/// Adds `TidegateError` and `DecodeError` to the module.
pub fn add_exceptions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("TidegateError", py.get_type::<TidegateError>())?;
    m.add("DecodeError", decode_error_type(py)?)?;
    Ok(())
}

/// Runs `f` with the GIL released. Use it for every call into the core that can take more
/// than about a millisecond (`ingest`, `take_batch`), so that other Python threads (the
/// asyncio loop) keep running; `f` must not touch Python objects.
pub(crate) fn without_gil<T: Send, F: Send + FnOnce() -> T>(py: Python<'_>, f: F) -> T {
    py.detach(f)
}

/// Per-point admission limits applied while decoding.
#[pyclass(frozen, module = "tidegate._core")]
pub struct CoreLimits {
    inner: Limits,
}

#[pymethods]
impl CoreLimits {
    #[new]
    #[pyo3(signature = (
        *,
        max_attributes = 128,
        max_attribute_value_bytes = 4096,
        max_name_bytes = 1024,
        max_past_ns = 2_592_000_000_000_000,
        max_future_ns = 3_600_000_000_000,
    ))]
    fn new(
        max_attributes: usize,
        max_attribute_value_bytes: usize,
        max_name_bytes: usize,
        max_past_ns: i64,
        max_future_ns: i64,
    ) -> Self {
        let inner = Limits {
            max_attributes,
            max_attribute_value_bytes,
            max_name_bytes,
            max_past_ns,
            max_future_ns,
        };
        CoreLimits { inner }
    }
    #[getter]
    fn max_attributes(&self) -> usize {
        self.inner.max_attributes
    }
    #[getter]
    fn max_attribute_value_bytes(&self) -> usize {
        self.inner.max_attribute_value_bytes
    }
    #[getter]
    fn max_name_bytes(&self) -> usize {
        self.inner.max_name_bytes
    }
    #[getter]
    fn max_past_ns(&self) -> i64 {
        self.inner.max_past_ns
    }
    #[getter]
    fn max_future_ns(&self) -> i64 {
        self.inner.max_future_ns
    }
}

/// The 16-byte identity of an Export request (deduplication of resends): xxh3-128 of
/// `signal ‖ 0 ‖ tenant ‖ 0 ‖ request`, big-endian. Not cryptographic: the tenant is part of
/// it, so a crafted collision could only make a tenant's own request look like a resend of
/// another of its own. At ~10 GB/s, a request of a few hundred KB takes microseconds, so the
/// GIL stays held.
#[pyfunction]
pub fn request_digest<'py>(
    py: Python<'py>,
    signal: &str,
    tenant: &str,
    request: &Bound<'py, PyBytes>,
) -> Bound<'py, PyBytes> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(signal.as_bytes());
    hasher.update(&[0]);
    hasher.update(tenant.as_bytes());
    hasher.update(&[0]);
    hasher.update(request.as_bytes());
    PyBytes::new(py, &hasher.digest128().to_be_bytes())
}

/// Drops the calling thread's key cache (`key_cache.rs`, up to about 18 MiB): a worker
/// thread that ingested spool records (replay, deferred requests) gives that memory back once
/// done; the decode threads keep theirs between requests.
#[pyfunction]
pub fn forget_key_cache() {
    crate::key_cache::KEY_CACHE.with_borrow_mut(|cache| *cache = Default::default());
}

/// The value at quantile `q` of an explicit-bucket histogram (see `histogram_quantile.rs`);
/// `None` when it is empty.
#[pyfunction]
#[pyo3(signature = (bounds, counts, q, min = f64::NEG_INFINITY, max = f64::INFINITY))]
pub fn histogram_quantile(
    bounds: Vec<f64>,
    counts: Vec<u64>,
    q: f64,
    min: f64,
    max: f64,
) -> Option<f64> {
    crate::histogram_quantile::quantile(&bounds, &counts, q, min, max)
}

/// How points are windowed into rollups (validated by the Python configuration).
#[pyclass(frozen, module = "tidegate._core")]
pub struct RollupSettings {
    inner: Settings,
}

#[pymethods]
impl RollupSettings {
    #[new]
    #[pyo3(signature = (*, window_seconds = 60, lateness_seconds = 60, compression = 100.0))]
    fn new(window_seconds: i64, lateness_seconds: i64, compression: f64) -> PyResult<Self> {
        if window_seconds <= 0 || 3600 % window_seconds != 0 {
            return Err(PyValueError::new_err(format!(
                "window_seconds must divide 3600, got {window_seconds}"
            )));
        }
        if lateness_seconds < 0 {
            return Err(PyValueError::new_err(
                "lateness_seconds must not be negative",
            ));
        }
        crate::tdigest::TDigest::new(compression)?;
        let inner = Settings {
            window_ns: window_seconds * NS_PER_SECOND,
            lateness_ns: lateness_seconds * NS_PER_SECOND,
            compression,
            changes: Vec::new(),
        };
        Ok(RollupSettings { inner })
    }
    #[getter]
    fn window_seconds(&self) -> i64 {
        self.inner.window_ns / NS_PER_SECOND
    }
    #[getter]
    fn lateness_seconds(&self) -> i64 {
        self.inner.lateness_ns / NS_PER_SECOND
    }
    #[getter]
    fn compression(&self) -> f64 {
        self.inner.compression
    }
}

/// What one Export request did: counts, rejects by reason, and the encoded response.
#[pyclass(frozen, module = "tidegate._core")]
pub struct ExportSummary {
    #[pyo3(get)]
    accepted_points: u64,
    #[pyo3(get)]
    rejected_points: u64,
    by_reason: Vec<(&'static str, u64)>,
    #[pyo3(get)]
    error_message: String,
    #[pyo3(get)]
    response: Py<PyBytes>,
    #[pyo3(get)]
    seq: u64,
}

#[pymethods]
impl ExportSummary {
    #[getter]
    fn rejected_by_reason<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (reason, count) in &self.by_reason {
            dict.set_item(reason, count)?;
        }
        Ok(dict)
    }
}

/// Everything buffered since the previous flush, as PostgreSQL binary COPY payloads.
#[pyclass(frozen, module = "tidegate._core")]
pub struct MetricsBatch {
    #[pyo3(get)]
    series_copy: Py<CopyPayload>,
    #[pyo3(get)]
    point_chunks_copy: Py<CopyPayload>,
    #[pyo3(get)]
    histogram_chunks_copy: Py<CopyPayload>,
    #[pyo3(get)]
    exp_histogram_points_copy: Py<CopyPayload>,
    #[pyo3(get)]
    summary_points_copy: Py<CopyPayload>,
    #[pyo3(get)]
    rollups_copy: Py<CopyPayload>,
    #[pyo3(get)]
    points: u64,
    #[pyo3(get)]
    chunk_rows: u64,
    #[pyo3(get)]
    histogram_chunk_rows: u64,
    #[pyo3(get)]
    exp_histogram_rows: u64,
    #[pyo3(get)]
    summary_rows: u64,
    #[pyo3(get)]
    window_rollup_rows: u64,
    #[pyo3(get)]
    hour_rollup_rows: u64,
    #[pyo3(get)]
    days: Vec<i64>,
    #[pyo3(get)]
    seqs: Vec<u64>,
    #[pyo3(get)]
    open_from_seq: u64,
    new_series_ids: Vec<u64>,
}

#[pymethods]
impl MetricsBatch {
    #[getter]
    fn new_series(&self) -> usize {
        self.new_series_ids.len()
    }
}

/// Decodes OTLP metrics requests and buffers their points until the next `take_batch`.
#[pyclass(frozen, module = "tidegate._core")]
pub struct MetricsCore {
    inner: ingest::MetricsCore,
}

#[pymethods]
impl MetricsCore {
    #[new]
    fn new(limits: &Bound<'_, CoreLimits>, rollups: &Bound<'_, RollupSettings>) -> Self {
        MetricsCore {
            inner: ingest::MetricsCore::new(limits.get().inner, rollups.get().inner.clone()),
        }
    }

    // The tenant defaults are the literal of `tenants::DEFAULT_TENANT`: a constant would show
    // as `...` in the signature Python sees (and stubtest compares).
    #[pyo3(signature = (request, now_ns, seq = None, *, tenant = "default", deferred = false))]
    fn ingest(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyBytes>,
        now_ns: i64,
        seq: Option<u64>,
        tenant: &str,
        deferred: bool,
    ) -> PyResult<ExportSummary> {
        // Sound to use across `detach`: `bytes` objects are immutable and `request` keeps this
        // one alive until we return.
        let bytes = request.as_bytes();
        // A replayed record is never refused by the series limit; a deferred one meets it.
        let limited = seq.is_none() || deferred;
        let outcome = without_gil(py, || {
            self.inner
                .ingest_limited(tenant, bytes, now_ns, seq, limited)
        })?;
        Ok(export_summary(py, outcome))
    }

    #[pyo3(signature = (request, now_ns, *, tenant = "default"))]
    fn check(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyBytes>,
        now_ns: i64,
        tenant: &str,
    ) -> PyResult<ExportSummary> {
        let bytes = request.as_bytes();
        let outcome = without_gil(py, || self.inner.check_as(tenant, bytes, now_ns))?;
        Ok(export_summary(py, outcome))
    }

    #[pyo3(signature = (limits, default))]
    fn set_series_limits(&self, limits: HashMap<String, u64>, default: Option<u64>) {
        self.inner.set_series_limits(SeriesLimits {
            by_tenant: limits,
            default,
        });
    }

    fn active_series(&self, tenant: &str) -> u64 {
        self.inner.active_series(tenant)
    }

    fn active_series_by_tenant(&self) -> HashMap<String, u64> {
        self.inner.active_series_by_tenant()
    }

    fn set_window_seconds(&self, seconds: i64) -> PyResult<()> {
        if seconds <= 0 || 3600 % seconds != 0 {
            return Err(PyValueError::new_err(format!(
                "window_seconds must divide 3600, got {seconds}"
            )));
        }
        self.inner.set_window_ns(seconds * NS_PER_SECOND);
        Ok(())
    }

    #[getter]
    fn window_seconds(&self) -> i64 {
        self.inner.window_ns() / NS_PER_SECOND
    }

    fn start_seqs_at(&self, next: u64) {
        self.inner.start_seqs_at(next);
    }

    /// Replays a spool record whose raw points are committed: see `ReplayFilter`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (
        request, now_ns, seq, *, tenant = "default", closed_at_ns, hours_closed_at_ns,
        hours_flushed_at_ns, in_hour_flush, windows_written, windows_written_by_hour_flush,
    ))]
    fn replay_rollups(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyBytes>,
        now_ns: i64,
        seq: u64,
        tenant: &str,
        closed_at_ns: i64,
        hours_closed_at_ns: i64,
        hours_flushed_at_ns: i64,
        in_hour_flush: bool,
        windows_written: bool,
        windows_written_by_hour_flush: bool,
    ) -> PyResult<()> {
        let bytes = request.as_bytes();
        let filter = ReplayFilter {
            closed_at_ns,
            hours_closed_at_ns,
            hours_flushed_at_ns,
            in_hour_flush,
            windows_written,
            windows_written_by_hour_flush,
        };
        without_gil(py, || {
            self.inner
                .replay_rollups(tenant, bytes, now_ns, seq, &filter)
        })?;
        Ok(())
    }

    #[pyo3(signature = (now_ns, *, flush_all = false, flush_hours = false))]
    fn take_batch(
        &self,
        py: Python<'_>,
        now_ns: i64,
        flush_all: bool,
        flush_hours: bool,
    ) -> PyResult<Option<MetricsBatch>> {
        let Some(batch) = without_gil(py, || {
            self.inner.take_batch_at(now_ns, flush_all, flush_hours)
        }) else {
            return Ok(None);
        };
        // The payloads move into Python objects: no copy, and no copy made under the GIL.
        let payload = |data: Vec<u8>| Py::new(py, CopyPayload::new(data));
        Ok(Some(MetricsBatch {
            series_copy: payload(batch.series_copy)?,
            point_chunks_copy: payload(batch.point_chunks_copy)?,
            histogram_chunks_copy: payload(batch.histogram_chunks_copy)?,
            exp_histogram_points_copy: payload(batch.exp_histogram_points_copy)?,
            summary_points_copy: payload(batch.summary_points_copy)?,
            rollups_copy: payload(batch.rollups_copy)?,
            points: batch.points,
            chunk_rows: batch.chunk_rows,
            histogram_chunk_rows: batch.histogram_chunk_rows,
            exp_histogram_rows: batch.exp_histogram_rows,
            summary_rows: batch.summary_rows,
            window_rollup_rows: batch.window_rollup_rows,
            hour_rollup_rows: batch.hour_rollup_rows,
            days: batch.days,
            seqs: batch.seqs,
            open_from_seq: batch.open_from_seq,
            new_series_ids: batch.new_series_ids,
        }))
    }

    fn forget_series(&self, py: Python<'_>, batch: &Bound<'_, MetricsBatch>) {
        let ids = &batch.get().new_series_ids;
        without_gil(py, || self.inner.forget_series(ids));
    }

    fn adopt_stored_series(&self, stored: Vec<(u64, u64)>) {
        self.inner.adopt_stored_series(&stored);
    }

    #[getter]
    fn buffered_points(&self) -> u64 {
        self.inner.buffered_points()
    }

    #[getter]
    fn open_windows(&self) -> usize {
        self.inner.open_windows()
    }

    #[getter]
    fn oldest_open_window_start_ns(&self) -> Option<i64> {
        self.inner.oldest_open_window_start_ns()
    }

    #[getter]
    fn known_series(&self) -> usize {
        self.inner.known_series()
    }

    #[getter]
    fn series_collisions(&self) -> usize {
        self.inner.series_collisions()
    }
}

fn export_summary(py: Python<'_>, outcome: ingest::IngestOutcome) -> ExportSummary {
    ExportSummary {
        accepted_points: outcome.accepted_points,
        rejected_points: outcome.rejected_points,
        by_reason: outcome.rejected_by_reason,
        error_message: outcome.error_message,
        response: PyBytes::new(py, &outcome.response).unbind(),
        seq: outcome.seq,
    }
}
