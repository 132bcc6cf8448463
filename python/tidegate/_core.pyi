"""Type stubs for the Rust extension module ``tidegate._core``.

Checked against the built module by ``python -m mypy.stubtest tidegate._core``.
"""

from typing import Self, final

__version__: str

class TidegateError(Exception):
    """Base class of every error raised by the Rust core."""

class DecodeError(TidegateError, ValueError):
    """The request bytes are not a decodable OTLP message; nothing of it was accepted."""

@final
class CoreLimits:
    """Per-point admission limits applied while decoding."""

    def __new__(
        cls,
        *,
        max_attributes: int = 128,
        max_attribute_value_bytes: int = 4096,
        max_name_bytes: int = 1024,
        max_past_ns: int = 30 * 86400 * 10**9,
        max_future_ns: int = 3600 * 10**9,
    ) -> Self: ...
    @property
    def max_attributes(self) -> int: ...
    @property
    def max_attribute_value_bytes(self) -> int: ...
    @property
    def max_name_bytes(self) -> int: ...
    @property
    def max_past_ns(self) -> int: ...
    @property
    def max_future_ns(self) -> int: ...

@final
class ExportSummary:
    """What one Export request did: counts, rejects by reason, and the encoded response."""

    @property
    def accepted_points(self) -> int: ...
    @property
    def rejected_points(self) -> int: ...
    @property
    def rejected_by_reason(self) -> dict[str, int]: ...
    @property
    def error_message(self) -> str: ...
    @property
    def response(self) -> bytes:
        """Serialized ``ExportMetricsServiceResponse`` (with ``partial_success`` when any point
        was rejected), ready to send as the gRPC reply."""

@final
class MetricsBatch:
    """Everything buffered since the previous flush, as PostgreSQL binary COPY payloads.

    Each ``*_copy`` payload is a complete binary COPY stream (header, rows, trailer) for the
    table of the same name; an empty ``bytes`` means the table has no rows in this batch.
    """

    @property
    def series_copy(self) -> bytes: ...
    @property
    def point_chunks_copy(self) -> bytes: ...
    @property
    def histogram_chunks_copy(self) -> bytes: ...
    @property
    def exp_histogram_points_copy(self) -> bytes: ...
    @property
    def summary_points_copy(self) -> bytes: ...
    @property
    def new_series(self) -> int: ...
    @property
    def points(self) -> int:
        """Data points in the batch, of every type."""
    @property
    def chunk_rows(self) -> int: ...
    @property
    def histogram_chunk_rows(self) -> int: ...
    @property
    def exp_histogram_rows(self) -> int: ...
    @property
    def summary_rows(self) -> int: ...
    @property
    def days(self) -> list[int]:
        """UTC days (days since 1970-01-01) that rows of this batch fall in, sorted."""

@final
class MetricsCore:
    """Decodes OTLP metrics requests and buffers their points until the next ``take_batch``.

    Thread-safe: ``ingest`` may run on several threads at once (the GIL is released).
    """

    def __new__(cls, limits: CoreLimits) -> Self: ...
    def ingest(self, request: bytes, now_ns: int) -> ExportSummary:
        """Decode ``ExportMetricsServiceRequest`` bytes and buffer every valid point.

        Raises ``DecodeError`` when the bytes are not a decodable request.
        """
    def take_batch(self) -> MetricsBatch | None:
        """Move everything buffered into a batch of COPY payloads; ``None`` when empty."""
    def forget_series(self, batch: MetricsBatch) -> None:
        """Forget the series first seen in ``batch`` (its write failed), so that the next
        batch that carries them inserts them again."""
    @property
    def buffered_points(self) -> int: ...
    @property
    def known_series(self) -> int: ...
    @property
    def series_collisions(self) -> int:
        """Distinct series whose id collided with another's in this process."""
