//! `CopyPayload`: a COPY payload the core encoded, handed to Python without copying it.
//!
//! A flush that closes a window for every series encodes hundreds of megabytes of rollup rows;
//! copying them into `bytes` would hold the GIL for the copy and keep both copies until the
//! batch is dropped. The payload's `Vec` moves into this object instead, and Python reads it
//! through the buffer protocol (`memoryview(payload)`), read-only, for as long as a view or
//! the object is alive.

use std::ffi::{c_int, c_void};

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// Bytes of one binary COPY stream, readable through the buffer protocol (read-only).
#[pyclass(frozen, module = "tidegate._core")]
pub struct CopyPayload {
    data: Vec<u8>,
}

impl CopyPayload {
    pub fn new(data: Vec<u8>) -> Self {
        CopyPayload { data }
    }
}

#[pymethods]
impl CopyPayload {
    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// # Safety
    /// `view` comes from CPython's buffer machinery. The object is frozen and its `Vec` is
    /// never changed after construction, so the pointer stays valid while the view holds its
    /// reference to the object (`PyBuffer_FillInfo` takes one).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no buffer view to fill"));
        }
        let refuse = |message: &'static str| {
            // SAFETY: `view` is not null; a refused request leaves no object in it.
            unsafe { (*view).obj = std::ptr::null_mut() };
            Err(PyBufferError::new_err(message))
        };
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return refuse("a COPY payload is read-only");
        }
        let data = &slf.get().data;
        let Ok(len) = ffi::Py_ssize_t::try_from(data.len()) else {
            return refuse("payload larger than a buffer can describe");
        };
        // SAFETY: see above; readonly = 1, and the flags were checked for a writable request.
        let filled = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr() as *mut c_void,
                len,
                1,
                flags,
            )
        };
        if filled == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// Nothing to release: the data lives as long as the object.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
