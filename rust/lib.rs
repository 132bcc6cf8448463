//! tidegate's Rust core: OTLP decode, series ids, PostgreSQL COPY encoding and t-digests.
//!
//! This file only registers things; the logic lives in pure-Rust modules (no pyo3) and the
//! Python wrappers in `python.rs`.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

pub mod admission;
pub mod attributes;
pub mod batch;
#[cfg(feature = "bench-internals")]
pub mod bench_api;
pub mod buffer;
pub mod copy_binary;
pub mod decode;
pub mod error;
pub mod exp_buckets;
pub mod histogram_chunks;
pub mod histogram_quantile;
pub mod ingest;
pub mod key_cache;
pub mod live_settings;
pub mod otlp_decode;
mod otlp_points;
pub mod otlp_spans;
pub mod otlp_view;
pub mod python;
mod python_payload;
mod python_spool;
mod python_tdigest;
mod python_traces;
pub mod reject;
pub mod rollup_rows;
pub mod rollup_settings;
pub mod rows;
pub mod series;
pub mod spool_write;
pub mod staged;
pub mod tdigest;
pub mod tdigest_codec;
mod tdigest_query;
pub mod tenants;
pub mod trace_blocks;
pub mod trace_index;
pub mod trace_ingest;
pub mod trace_read;
pub mod trace_sampling;
pub mod validate;
pub mod window_agg;
pub mod windows;
pub mod wire;

#[cfg(test)]
mod tests;

/// The borrowed decoder allocates little, but staging, batches and the prost fallback still
/// do, and mimalloc beat glibc malloc clearly when every decoded string was allocated; polars
/// does the same. It only serves Rust allocations: Python objects use Python's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The extension module `tidegate._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The columns of the COPY tuples the core encodes, for the writers' COPY statements.
    m.add(
        "SERIES_COLUMNS",
        PyTuple::new(m.py(), rows::SERIES_COLUMNS)?,
    )?;
    m.add(
        "ROLLUP_COLUMNS",
        PyTuple::new(m.py(), rollup_rows::ROLLUP_COLUMNS)?,
    )?;
    m.add(
        "TRACE_INDEX_COLUMNS",
        PyTuple::new(m.py(), trace_index::INDEX_COLUMNS)?,
    )?;
    python::add_exceptions(m)?;
    m.add_class::<python::CoreLimits>()?;
    m.add_class::<python::ExportSummary>()?;
    m.add_class::<python::CopyPayload>()?;
    m.add_class::<python::MetricsBatch>()?;
    m.add_class::<python::MetricsCore>()?;
    m.add_class::<python::RollupSettings>()?;
    m.add_function(wrap_pyfunction!(python::histogram_quantile, m)?)?;
    m.add_function(wrap_pyfunction!(python::request_digest, m)?)?;
    m.add_function(wrap_pyfunction!(python::forget_key_cache, m)?)?;
    m.add_class::<python_spool::SpoolGroupWriter>()?;
    m.add_class::<python_traces::TraceSettings>()?;
    m.add_class::<python_traces::TraceCore>()?;
    m.add_class::<python_traces::TraceBlock>()?;
    m.add_class::<python_traces::TraceExportSummary>()?;
    m.add_function(wrap_pyfunction!(python_traces::read_trace_json, m)?)?;
    m.add_function(wrap_pyfunction!(python_traces::attribute_hash, m)?)?;
    m.add_function(wrap_pyfunction!(python_traces::read_trace_protobuf, m)?)?;
    m.add_class::<python::TDigest>()?;
    // pyo3's `add` also builds `__all__`; a private module has no star-import surface, and
    // without it the module matches `_core.pyi` exactly (checked by stubtest).
    m.delattr("__all__")?;
    Ok(())
}
