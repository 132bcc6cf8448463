//! The Python wrapper of the t-digest (`tidegate._core.TDigest`); the logic is in `tdigest.rs`.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::python::without_gil;
use crate::tdigest;
use crate::tdigest_codec::split_concatenated;

/// Values below this many are added with the GIL held: releasing it costs more than adding.
const ADD_WITHOUT_GIL_MIN: usize = 10_000;

/// A mergeable t-digest (see `rust/tdigest.rs`), for benchmarks and the query path.
#[pyclass(module = "tidegate._core")]
pub struct TDigest {
    inner: tdigest::TDigest,
}

#[pymethods]
impl TDigest {
    #[new]
    // A literal (not `DEFAULT_COMPRESSION`), so that Python sees the default in the signature.
    #[pyo3(signature = (compression = 100.0))]
    fn new(compression: f64) -> PyResult<Self> {
        Ok(TDigest {
            inner: tdigest::TDigest::new(compression)?,
        })
    }

    fn add(&mut self, value: f64) -> PyResult<()> {
        Ok(self.inner.add(value)?)
    }

    fn add_many(&mut self, py: Python<'_>, values: PyBuffer<f64>) -> PyResult<()> {
        // A copy, because the buffer's owner may change it while the GIL is released.
        let values = values.to_vec(py)?;
        let inner = &mut self.inner;
        if values.len() < ADD_WITHOUT_GIL_MIN {
            return Ok(inner.add_slice(&values)?);
        }
        Ok(without_gil(py, || inner.add_slice(&values))?)
    }

    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, Self>) {
        if slf.is(other) {
            let copy = slf.borrow().inner.clone();
            slf.borrow_mut().inner.merge(&copy);
        } else {
            slf.borrow_mut().inner.merge(&other.borrow().inner);
        }
    }

    fn quantile(&mut self, q: f64) -> PyResult<f64> {
        if !(0.0..=1.0).contains(&q) {
            return Err(PyValueError::new_err(format!(
                "quantile {q} is outside [0, 1]"
            )));
        }
        // Compressing in place spares every later query a copy.
        self.inner.compress();
        Ok(self.inner.quantile(q))
    }

    fn rank(&mut self, value: f64) -> f64 {
        self.inner.compress();
        self.inner.rank(value)
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// One digest merged from serialized ones (rollup partials; each item may hold several
    /// written back to back), with the GIL released.
    #[staticmethod]
    #[pyo3(signature = (digests, compression = 100.0))]
    fn merged(py: Python<'_>, digests: Vec<Vec<u8>>, compression: f64) -> PyResult<Self> {
        let mut inner = tdigest::TDigest::new(compression)?;
        let parts = without_gil(py, || {
            let mut parts = Vec::new();
            for item in &digests {
                for one in split_concatenated(item)? {
                    parts.push(tdigest::TDigest::from_bytes(one)?);
                }
            }
            Ok::<_, crate::error::CoreError>(parts)
        })?;
        without_gil(py, || inner.merge_all(&parts));
        Ok(TDigest { inner })
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(TDigest {
            inner: tdigest::TDigest::from_bytes(data)?,
        })
    }

    #[getter]
    fn compression(&self) -> f64 {
        self.inner.compression()
    }
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count()
    }
    #[getter]
    fn sum(&self) -> f64 {
        self.inner.sum()
    }
    #[getter]
    fn min(&self) -> f64 {
        self.inner.min().unwrap_or(f64::NAN)
    }
    #[getter]
    fn max(&self) -> f64 {
        self.inner.max().unwrap_or(f64::NAN)
    }
    #[getter]
    fn centroid_count(&mut self) -> usize {
        self.inner.compress();
        self.inner.centroids().len()
    }
}
