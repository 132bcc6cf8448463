//! Python wrappers of the trace core (`trace_ingest.rs`, `trace_blocks.rs`, `trace_read.rs`).

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use opentelemetry_proto::tonic::trace::v1::TracesData;

use crate::error::CoreError;
use crate::python::without_gil;
use crate::trace_blocks::{self, TraceSettings as Settings};
use crate::trace_read;
use crate::trace_sampling::SamplingRatios;

/// The largest block dictionary (the configuration's bound; readers accept up to 64 MiB).
const MAX_DICTIONARY_BYTES: usize = 16 << 20;

/// When blocks are cut and how frames are compressed.
#[pyclass(frozen, module = "tidegate._core")]
pub struct TraceSettings {
    inner: Settings,
}

#[pymethods]
impl TraceSettings {
    #[new]
    #[pyo3(signature = (
        *, block_max_bytes = 8_388_608, block_max_age_seconds = 5.0, zstd_level = 3,
        dictionary_bytes = 262_144,
    ))]
    fn new(
        block_max_bytes: usize,
        block_max_age_seconds: f64,
        zstd_level: i32,
        dictionary_bytes: usize,
    ) -> PyResult<Self> {
        if block_max_bytes == 0
            || block_max_age_seconds.is_nan()
            || block_max_age_seconds <= 0.0
            || !(1..=19).contains(&zstd_level)
            || dictionary_bytes > MAX_DICTIONARY_BYTES
        {
            return Err(PyValueError::new_err(
                "block_max_bytes and block_max_age_seconds must be > 0, zstd_level 1..19, \
                 dictionary_bytes at most 16 MiB",
            ));
        }
        let inner = Settings {
            block_max_bytes,
            block_max_age_ns: (block_max_age_seconds * 1e9) as i64,
            zstd_level,
            dictionary_bytes,
        };
        Ok(TraceSettings { inner })
    }
}

/// What one trace Export did.
#[pyclass(frozen, module = "tidegate._core")]
pub struct TraceExportSummary {
    #[pyo3(get)]
    accepted_spans: u64,
    #[pyo3(get)]
    sampled_out_spans: u64,
    #[pyo3(get)]
    rejected_spans: u64,
    #[pyo3(get)]
    error_message: String,
    #[pyo3(get)]
    response: Py<PyBytes>,
    #[pyo3(get)]
    seq: u64,
}

/// A cut block: the object to store and the `trace_index` rows to commit after it.
#[pyclass(frozen, module = "tidegate._core")]
pub struct TraceBlock {
    #[pyo3(get)]
    key: String,
    #[pyo3(get)]
    id: i64,
    #[pyo3(get)]
    data: Py<PyBytes>,
    #[pyo3(get)]
    dictionary: Py<PyBytes>,
    #[pyo3(get)]
    index_copy: Py<PyBytes>,
    #[pyo3(get)]
    traces: u64,
    #[pyo3(get)]
    spans: u64,
    #[pyo3(get)]
    days: Vec<i64>,
    #[pyo3(get)]
    seqs: Vec<u64>,
}

/// Decodes OTLP trace requests and cuts their spans into blocks.
#[pyclass(frozen, module = "tidegate._core")]
pub struct TraceCore {
    inner: trace_blocks::TraceCore,
}

#[pymethods]
impl TraceCore {
    #[new]
    fn new(settings: &Bound<'_, TraceSettings>) -> Self {
        TraceCore {
            inner: trace_blocks::TraceCore::new(settings.get().inner),
        }
    }

    // "default" is `trace_blocks::DEFAULT_TENANT`, spelled out so the signature shows it.
    #[pyo3(signature = (request, now_ns, seq = None, *, tenant = "default"))]
    fn ingest(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyBytes>,
        now_ns: i64,
        seq: Option<u64>,
        tenant: &str,
    ) -> PyResult<TraceExportSummary> {
        // `bytes` objects are immutable and `request` keeps this one alive until we return.
        let bytes = request.as_bytes();
        let outcome = without_gil(py, || self.inner.ingest_seq(bytes, now_ns, seq, tenant))?;
        Ok(summary(py, outcome))
    }

    /// `now_ns` and `tenant` keep the signature of `ingest` (span checks and sampling depend
    /// on neither).
    #[pyo3(signature = (request, now_ns, *, tenant = "default"))]
    #[allow(unused_variables)]
    fn check(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyBytes>,
        now_ns: i64,
        tenant: &str,
    ) -> PyResult<TraceExportSummary> {
        let bytes = request.as_bytes();
        let outcome = without_gil(py, || self.inner.check(bytes))?;
        Ok(summary(py, outcome))
    }

    #[pyo3(signature = (ratios, default = 1.0))]
    fn set_sampling(&self, ratios: HashMap<String, f64>, default: f64) -> PyResult<()> {
        let ratios = SamplingRatios::new(ratios, default).map_err(PyValueError::new_err)?;
        self.inner.set_sampling(ratios);
        Ok(())
    }

    fn start_seqs_at(&self, next: u64) {
        self.inner.start_seqs_at(next);
    }

    fn block_due(&self, now_ns: i64) -> bool {
        self.inner.block_due(now_ns)
    }

    #[pyo3(signature = (now_ns, *, force = false))]
    fn take_block(&self, py: Python<'_>, now_ns: i64, force: bool) -> Option<TraceBlock> {
        let block = without_gil(py, || self.inner.take_block(now_ns, force))?;
        Some(TraceBlock {
            key: block.key,
            id: block.id,
            data: PyBytes::new(py, &block.data).unbind(),
            dictionary: PyBytes::new(py, &block.dictionary).unbind(),
            index_copy: PyBytes::new(py, &block.index_copy).unbind(),
            traces: block.traces,
            spans: block.spans,
            days: block.days,
            seqs: block.seqs,
        })
    }

    #[getter]
    fn pending_spans(&self) -> u64 {
        self.inner.pending_spans()
    }
}

fn summary(py: Python<'_>, outcome: trace_blocks::TraceIngestOutcome) -> TraceExportSummary {
    TraceExportSummary {
        accepted_spans: outcome.accepted_spans,
        sampled_out_spans: outcome.sampled_out_spans,
        rejected_spans: outcome.rejected_spans,
        error_message: outcome.error_message,
        response: PyBytes::new(py, &outcome.response).unbind(),
        seq: outcome.seq,
    }
}

/// The search hash of a `key=value` span attribute, as `trace_index.attributes` holds it.
#[pyfunction]
pub fn attribute_hash(pair: &str) -> i32 {
    crate::trace_ingest::attribute_hash(pair)
}

/// A stored frame and the (compressed) dictionary of its block, empty when it has none.
type StoredFrame = (Vec<u8>, Vec<u8>);

fn joined_trace(frames: &[StoredFrame]) -> Result<TracesData, CoreError> {
    let slices: Vec<(&[u8], &[u8])> = frames
        .iter()
        .map(|(f, d)| (f.as_slice(), d.as_slice()))
        .collect();
    trace_read::decode_trace(&trace_read::join_frames(&slices)?)
}

/// Frames of one trace (from one or more blocks, each with its block's dictionary) → its
/// OTLP JSON, `{"resourceSpans": ...}`, or `{"batches": ...}` with `tempo`; each span once.
#[pyfunction]
#[pyo3(signature = (frames, *, tempo = false))]
pub fn read_trace_json(py: Python<'_>, frames: Vec<StoredFrame>, tempo: bool) -> PyResult<String> {
    let data = without_gil(py, || joined_trace(&frames))?;
    Ok(trace_read::trace_json(&data, tempo))
}

/// Frames of one trace → the encoded `TracesData` (each span once).
#[pyfunction]
pub fn read_trace_protobuf<'py>(
    py: Python<'py>,
    frames: Vec<StoredFrame>,
) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = without_gil(py, || {
        joined_trace(&frames).map(|d| trace_read::trace_protobuf(&d))
    })?;
    Ok(PyBytes::new(py, &bytes))
}
