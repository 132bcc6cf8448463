//! `SpoolGroupWriter`: the spool's writer thread writes each group through it, with the GIL
//! released for the encoding, the CRCs, the write and the fsync (`spool_write.rs`).

use std::io;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::python::without_gil;
use crate::spool_write::{GroupWriter, RecordRef};

/// One record as Python hands it over: seq, now_ns, flags, tenant (utf-8), request hash
/// (16 bytes), payload.
type RecordTuple<'py> = (
    u64,
    i64,
    u8,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
);

/// Writes groups of spool records to a segment's fd: laid out in one buffer aligned to
/// `align` and padded to it (1: no padding), one write, then fdatasync if asked.
#[pyclass(module = "tidegate._core")]
pub struct SpoolGroupWriter {
    inner: GroupWriter,
}

#[pymethods]
impl SpoolGroupWriter {
    #[new]
    fn new(align: usize) -> PyResult<Self> {
        Ok(Self {
            inner: GroupWriter::new(align).map_err(PyValueError::new_err)?,
        })
    }

    #[getter]
    fn align(&self) -> usize {
        self.inner.align()
    }

    /// Write `prefix` (a segment's file header, or b"") and `records`, padded, to `fd`;
    /// fdatasync it when `sync`. Returns the bytes written. Raises OSError (with its errno)
    /// when the write or the fsync fails, ValueError for a record the format cannot hold or
    /// a negative fd (pyo3's OverflowError or TypeError for fields of the wrong range or
    /// type, which `SpoolRecord` checks first).
    #[pyo3(signature = (fd, records, *, sync, prefix = None))]
    fn write_group(
        &mut self,
        py: Python<'_>,
        fd: i32,
        records: Vec<RecordTuple<'_>>,
        sync: bool,
        prefix: Option<&Bound<'_, PyBytes>>,
    ) -> PyResult<usize> {
        // Sound to use across `detach`: `bytes` objects are immutable and `records` keeps
        // them alive until we return.
        let mut refs = Vec::with_capacity(records.len());
        for (seq, now_ns, flags, tenant, request_hash, payload) in &records {
            let request_hash: &[u8; 16] = request_hash.as_bytes().try_into().map_err(|_| {
                PyValueError::new_err(format!(
                    "request_hash must be 16 bytes, not {}",
                    request_hash.as_bytes().len()
                ))
            })?;
            let record = RecordRef {
                seq: *seq,
                now_ns: *now_ns,
                flags: *flags,
                tenant: tenant.as_bytes(),
                request_hash,
                payload: payload.as_bytes(),
            };
            record.check().map_err(PyValueError::new_err)?;
            refs.push(record);
        }
        if fd < 0 {
            return Err(PyValueError::new_err(format!("fd must be open, not {fd}")));
        }
        let prefix = prefix.map_or(&[][..], |p| p.as_bytes());
        let inner = &mut self.inner;
        without_gil(py, || inner.write(fd, prefix, &refs, sync)).map_err(os_error)
    }
}

/// `OSError(errno, strerror)`, so that Python sees the errno (and the subclass it implies)
/// as from `os.write`.
fn os_error(error: io::Error) -> PyErr {
    match error.raw_os_error() {
        Some(code) => {
            let text = error.to_string();
            let strerror = text.split(" (os error").next().unwrap_or(&text).to_owned();
            PyOSError::new_err((code, strerror))
        }
        None => PyOSError::new_err(error.to_string()),
    }
}
