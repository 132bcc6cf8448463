"""A batch's COPY payloads as Python reads them: through the buffer protocol, read-only, the
bytes of one binary COPY stream, alive as long as a view of them is."""

from __future__ import annotations

import gc
import struct

import pytest

from tests import payloads
from tidegate._core import CopyPayload, CoreLimits, MetricsBatch, MetricsCore, RollupSettings

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _batch(points: int) -> MetricsBatch:
    core = MetricsCore(CoreLimits(), RollupSettings(window_seconds=60))
    gauge = payloads.gauge(
        "temperature", [payloads.number_point(float(i), {"room": str(i)}) for i in range(points)]
    )
    core.ingest(payloads.request([gauge]).SerializeToString(), payloads.now_ns())
    batch = core.take_batch(payloads.now_ns())
    assert batch is not None
    return batch


def _rows(stream: bytes) -> int:
    """Rows of a binary COPY stream (header, tuples of length-prefixed fields, trailer)."""
    assert stream.startswith(COPY_SIGNATURE)
    (extension,) = struct.unpack_from(">I", stream, 15)
    pos, rows = 19 + extension, 0
    while True:
        (fields,) = struct.unpack_from(">h", stream, pos)
        pos += 2
        if fields == -1:
            assert pos == len(stream), "nothing after the trailer"
            return rows
        for _ in range(fields):
            (length,) = struct.unpack_from(">i", stream, pos)
            pos += 4 + max(length, 0)
        rows += 1


def test_payloads_are_copy_streams_read_without_a_copy() -> None:
    batch = _batch(3)
    chunks, series = batch.point_chunks_copy, batch.series_copy
    assert isinstance(chunks, CopyPayload)
    view = memoryview(chunks)
    assert (view.readonly, view.format, view.ndim, view.nbytes) == (True, "B", 1, len(chunks))
    assert _rows(bytes(view)) == batch.chunk_rows == 3
    assert _rows(bytes(series)) == batch.new_series == 3
    with pytest.raises(TypeError):
        view[0] = 0
    # Same memory every time: a second view reads the first one's bytes.
    assert memoryview(chunks).tobytes() == view.tobytes()


def test_an_empty_payload_is_falsy_and_a_view_outlives_its_batch() -> None:
    batch = _batch(2)
    empty = batch.summary_points_copy
    assert (len(empty), bool(empty), bytes(empty)) == (0, False, b"")
    view = memoryview(batch.point_chunks_copy)
    expected = view.tobytes()
    del batch
    gc.collect()
    assert view.tobytes() == expected
    assert _rows(expected) == 2
