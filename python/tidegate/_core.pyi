"""Type stubs for the Rust extension module ``tidegate._core``.

Checked against the built module by ``python -m mypy.stubtest tidegate._core``.
"""

from typing import Self, final

from typing_extensions import Buffer

__version__: str
# The columns of the COPY tuples the core encodes, in order.
SERIES_COLUMNS: tuple[str, ...]
ROLLUP_COLUMNS: tuple[str, ...]
TRACE_INDEX_COLUMNS: tuple[str, ...]

class TidegateError(Exception):
    """Base class of every error raised by the Rust core."""

class DecodeError(TidegateError, ValueError):
    """Bytes given to the core (an OTLP request, a serialized t-digest) are not decodable;
    nothing of them was accepted."""

def histogram_quantile(
    bounds: list[float],
    counts: list[int],
    q: float,
    min: float = ...,
    max: float = ...,
) -> float | None:
    """The value at quantile ``q`` of an explicit-bucket histogram (upper-inclusive
    ``bounds``, ``len(bounds) + 1`` counts), interpolated inside its bucket and clamped to the
    observed ``min``/``max``; ``None`` when the histogram is empty."""

def request_digest(signal: str, tenant: str, request: bytes) -> bytes:
    """The 16-byte identity of an Export request: xxh3-128 of signal, tenant and bytes, each
    field ended by a zero byte (the request last), big-endian. Equal bytes of one tenant are
    a resend."""

def forget_key_cache() -> None:
    """Drop the calling thread's cache of attribute sets and series keys (up to about 18 MiB):
    what a worker thread that ingested spool records calls once done."""

@final
class RollupSettings:
    """How points are windowed into rollups."""

    def __new__(
        cls, *, window_seconds: int = 60, lateness_seconds: int = 60, compression: float = 100.0
    ) -> Self:
        """``ValueError`` unless the window divides an hour, the lateness is not negative and
        the compression is within the t-digest's range."""
    @property
    def window_seconds(self) -> int: ...
    @property
    def lateness_seconds(self) -> int: ...
    @property
    def compression(self) -> float: ...

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
    @property
    def seq(self) -> int:
        """The request's spool sequence number."""

@final
class CopyPayload:
    """One binary COPY stream the core encoded, held without a copy: read it through the
    buffer protocol (``memoryview(payload)``, read-only); ``len()`` is its size in bytes."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

@final
class MetricsBatch:
    """Everything buffered since the previous flush, as PostgreSQL binary COPY payloads.

    Each ``*_copy`` payload is a complete binary COPY stream (header, rows, trailer) for the
    table of the same name; an empty payload means the table has no rows in this batch.
    """

    @property
    def series_copy(self) -> CopyPayload: ...
    @property
    def point_chunks_copy(self) -> CopyPayload: ...
    @property
    def histogram_chunks_copy(self) -> CopyPayload: ...
    @property
    def exp_histogram_points_copy(self) -> CopyPayload: ...
    @property
    def summary_points_copy(self) -> CopyPayload: ...
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
    def rollups_copy(self) -> CopyPayload:
        """Closed windows and hours, one COPY stream for the ``rollups`` table."""
    @property
    def window_rollup_rows(self) -> int: ...
    @property
    def hour_rollup_rows(self) -> int: ...
    @property
    def days(self) -> list[int]:
        """UTC days (days since 1970-01-01) that rows of this batch fall in, sorted."""
    @property
    def seqs(self) -> list[int]:
        """Spool sequence numbers of the requests whose points are in this batch."""
    @property
    def open_from_seq(self) -> int:
        """The lowest sequence number holding data of a window or hour still open after
        this batch (2**64 - 1 when none): a restart replays rollups from there."""

@final
class MetricsCore:
    """Decodes OTLP metrics requests and buffers their points until the next ``take_batch``.

    Thread-safe: ``ingest`` may run on several threads at once (the GIL is released).
    """

    def __new__(cls, limits: CoreLimits, rollups: RollupSettings) -> Self: ...
    def ingest(
        self,
        request: bytes,
        now_ns: int,
        seq: int | None = None,
        *,
        tenant: str = "default",
        deferred: bool = False,
    ) -> ExportSummary:
        """Decode ``ExportMetricsServiceRequest`` bytes sent for ``tenant`` and buffer every
        valid point, under spool sequence number ``seq`` (a replayed record) or the next one
        (``.seq`` of the result); the next batch lists it.

        The tenant's name begins the canonical form of each series, so two tenants never
        share a series. Points of series that are not active while the tenant is at its
        active-series limit are rejected (``series_limit``); a replayed record (``seq``
        given) was acknowledged already and is never refused, unless it is ``deferred``: a
        request answered from ``check`` and ingested now under the ``seq`` it got there meets
        the limit, as its answer said.

        Raises ``DecodeError`` when the bytes are not a decodable request.
        """
    def check(self, request: bytes, now_ns: int, *, tenant: str = "default") -> ExportSummary:
        """Decode and check a request as ``ingest`` does (the active-series limit included),
        buffering and recording nothing: it gets a sequence number (``.seq``) and waits in
        the spool, to be ingested later under it."""
    def start_seqs_at(self, next: int) -> None:
        """Sequence numbers given out from now on start at ``next`` or above."""
    def replay_rollups(
        self,
        request: bytes,
        now_ns: int,
        seq: int,
        *,
        tenant: str = "default",
        closed_at_ns: int,
        hours_closed_at_ns: int,
        hours_flushed_at_ns: int,
        in_hour_flush: bool,
        windows_written: bool,
        windows_written_by_hour_flush: bool,
    ) -> None:
        """Replay a spool record of ``tenant`` whose raw points a committed batch holds: its
        points go back only into the windows and hours that were open at that commit (the
        batch took the windows closed by ``closed_at_ns`` and the hours closed by
        ``hours_closed_at_ns``; the last one that flushed every hour was taken at
        ``hours_flushed_at_ns``, and covered this record when ``in_hour_flush``; a shutdown had
        written every window of this record by that commit when ``windows_written``, and by
        that hour flush when ``windows_written_by_hour_flush``)."""
    def set_series_limits(self, limits: dict[str, int], default: int | None) -> None:
        """Replace the active-series limits in place: a tenant's limit is its entry in
        ``limits``, else ``default``, else none. Series already active stay active."""
    def active_series(self, tenant: str) -> int:
        """Series of ``tenant`` with an accepted point within the last hour of arrival time
        (idle series leave the count at the next sweep, at most a minute late)."""
    def active_series_by_tenant(self) -> dict[str, int]:
        """``active_series`` of every tenant this process has seen (``default`` always)."""
    def set_window_seconds(self, seconds: int) -> None:
        """Give new windows ``seconds`` (which must divide 3600, else ``ValueError``): windows
        that begin at or after the first multiple of both lengths that is at or after the end
        of every window open now use it; earlier ones keep the old length. Setting the
        current length does nothing."""
    @property
    def window_seconds(self) -> int:
        """The length of the windows that begin from now on."""
    def take_batch(
        self, now_ns: int, *, flush_all: bool = False, flush_hours: bool = False
    ) -> MetricsBatch | None:
        """Move every buffered point, and the windows and hours closed by ``now_ns`` (every
        window with ``flush_all``; every hour with ``flush_hours``), into a batch of COPY
        payloads; ``None`` when there is nothing and no request to account for."""
    def forget_series(self, batch: MetricsBatch) -> None:
        """Forget the series first seen in ``batch`` (its write failed), so that the next
        batch that carries them inserts them again."""
    def adopt_stored_series(self, stored: list[tuple[int, int]]) -> None:
        """``(id, fingerprint)`` of series PostgreSQL holds under ids this process gave other
        series (unsigned 64-bit values): later points of those series of this process are
        rejected as ``series_id_collision`` instead of being stored under another series."""
    @property
    def buffered_points(self) -> int: ...
    @property
    def open_windows(self) -> int:
        """Windows and hours not yet written as rollup rows."""
    @property
    def oldest_open_window_start_ns(self) -> int | None:
        """Start (Unix ns) of the oldest window not yet taken by ``take_batch``; ``None``
        when no window is open. Open hours are not counted."""
    @property
    def known_series(self) -> int: ...
    @property
    def series_collisions(self) -> int:
        """Distinct series whose id collided with another's in this process."""

@final
class TDigest:
    """A mergeable merging t-digest (k1 scale function), for percentiles of rollups.

    ``count``, ``min`` and ``max`` are exact, ``sum`` up to floating-point addition order.
    While it holds at most ``2 * compression / pi - 1`` values (62 at the default),
    ``quantile(q)`` is exactly the sorted values' ``x[floor(q * count)]`` (``q = 1`` gives
    ``max``). Not thread-safe: use one instance from one thread at a time.
    """

    def __new__(cls, compression: float = 100.0) -> Self:
        """An empty digest; ``compression`` must be within [10, 10000] (else ``ValueError``)."""
    def add(self, value: float) -> None:
        """Add one value; ``ValueError`` if it is NaN or infinite."""
    def add_many(self, values: Buffer) -> None:
        """Add every value of a buffer of float64 (``array.array("d")``, a numpy ``float64``
        array, a ``memoryview`` of format ``"d"``), with the GIL released for large inputs.
        ``ValueError`` (and nothing added) if one is NaN or infinite."""
    def merge(self, other: TDigest) -> None:
        """Add everything ``other`` holds; this digest keeps its own compression."""
    def quantile(self, q: float) -> float:
        """The estimated value at rank fraction ``q`` in [0, 1] (``ValueError`` outside);
        ``nan`` when empty."""
    def rank(self, value: float) -> float:
        """The estimated fraction of values below ``value``, equal ones counting half;
        ``nan`` when empty."""
    def to_bytes(self) -> bytes:
        """The digest in the versioned byte format of ``rust/tdigest_codec.rs``."""
    @staticmethod
    def merged(digests: list[bytes], compression: float = 100.0) -> TDigest:
        """One digest merged from serialized ones (rollup partials; an item may hold several
        digests back to back, as ``string_agg(digest, '')`` returns them); ``DecodeError``
        when one of them is not a valid digest."""
    @staticmethod
    def from_bytes(data: bytes) -> TDigest:
        """Read ``to_bytes`` output; ``DecodeError`` when ``data`` is not a valid digest."""
    @property
    def compression(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def min(self) -> float:
        """The smallest value added; ``nan`` when empty."""
    @property
    def max(self) -> float:
        """The largest value added; ``nan`` when empty."""
    @property
    def centroid_count(self) -> int:
        """Centroids after merging the unmerged buffer (what ``to_bytes`` would write)."""

@final
class SpoolGroupWriter:
    """Writes groups of spool records (the ``tidegate.spool`` format) to a segment's fd:
    laid out in one buffer aligned to ``align`` and padded to it with a padding record (no
    padding when ``align`` is 1), one write, then fdatasync if asked; the GIL is released
    for all of it. Not thread-safe: the spool's writer thread owns one."""

    def __new__(cls, align: int) -> Self:
        """``align`` is 1 or a power of two up to 1 MiB (else ``ValueError``)."""
    @property
    def align(self) -> int: ...
    def write_group(
        self,
        fd: int,
        records: list[tuple[int, int, int, bytes, bytes, bytes]],
        *,
        sync: bool,
        prefix: bytes | None = None,
    ) -> int:
        """Write ``prefix`` (a segment's file header) and ``records`` (seq, now_ns, flags,
        utf-8 tenant, 16-byte request hash, payload), padded, to ``fd``; fdatasync when
        ``sync``. Returns the bytes written. ``OSError`` (with its errno) when the write or the
        fsync fails, ``ValueError`` for a record the format cannot hold (a hash not of 16
        bytes, a tenant over 65535 bytes, a body over 4 GiB) or a negative fd;
        ``OverflowError`` or ``TypeError`` for fields out of their integer range or not
        ``bytes`` (``SpoolRecord`` checks those first)."""

@final
class TraceSettings:
    """When trace blocks are cut and how their frames are compressed."""

    def __new__(
        cls,
        *,
        block_max_bytes: int = 8_388_608,
        block_max_age_seconds: float = 5.0,
        zstd_level: int = 3,
        dictionary_bytes: int = 262_144,
    ) -> Self:
        """``ValueError`` unless sizes and ages are positive, the level is 1..19 and
        ``dictionary_bytes`` at most 16 MiB: the size of the raw-content dictionary (traces
        sampled across the block) its frames are compressed with; 0 for none."""

@final
class TraceExportSummary:
    """What one trace Export request did."""

    @property
    def accepted_spans(self) -> int:
        """Valid spans the sampling ratio of their service kept: queued for a block."""
    @property
    def sampled_out_spans(self) -> int:
        """Valid spans the sampling ratio of their service dropped. Not an error: they are
        not in ``rejected_spans`` and the response is a plain success."""
    @property
    def rejected_spans(self) -> int: ...
    @property
    def error_message(self) -> str: ...
    @property
    def response(self) -> bytes:
        """The serialized ``ExportTraceServiceResponse`` to send back."""
    @property
    def seq(self) -> int:
        """The request's spool sequence number."""

@final
class TraceBlock:
    """A cut block: the object to store under ``key``, then the ``trace_index`` rows."""

    @property
    def key(self) -> str:
        """``blocks/YYYY/MM/DD/HH/<xxh3-128 of data and dictionary>.tgb``: retried uploads
        rewrite one object."""
    @property
    def id(self) -> int:
        """The block's ``trace_blocks.block_id`` (the low 64 bits of the content hash), which
        its index rows name."""
    @property
    def data(self) -> bytes: ...
    @property
    def dictionary(self) -> bytes:
        """The zstd-compressed dictionary the frames were compressed with (empty: none)."""
    @property
    def index_copy(self) -> bytes:
        """A binary COPY stream for ``trace_index``."""
    @property
    def traces(self) -> int: ...
    @property
    def spans(self) -> int: ...
    @property
    def days(self) -> list[int]:
        """UTC days (since 1970-01-01) of the index rows, sorted."""
    @property
    def seqs(self) -> list[int]:
        """Spool sequence numbers of the requests whose spans are in this block."""

@final
class TraceCore:
    """Decodes OTLP trace requests and cuts their spans into blocks of zstd frames, one
    frame per trace. Thread-safe: ``ingest`` releases the GIL."""

    def __new__(cls, settings: TraceSettings) -> Self:
        """An empty core that keeps every span (until ``set_sampling``)."""
    def ingest(
        self, request: bytes, now_ns: int, seq: int | None = None, *, tenant: str = "default"
    ) -> TraceExportSummary:
        """Decode ``ExportTraceServiceRequest`` bytes of ``tenant`` and queue every valid span
        that sampling keeps, under spool sequence number ``seq`` (a replayed record) or the
        next one (``.seq`` of the result); the block that takes them lists it. Spans of one
        trace id from two tenants never share a frame or an index row. An empty tenant (a
        spool record written before tenants existed) is ``"default"``.

        Raises ``DecodeError`` when the bytes are not a decodable request."""
    def check(self, request: bytes, now_ns: int, *, tenant: str = "default") -> TraceExportSummary:
        """Decode and check a request as ``ingest`` does (sampling included), queueing
        nothing: it gets a sequence number (``.seq``) and waits in the spool, to be ingested
        later under it."""
    def set_sampling(self, ratios: dict[str, float], default: float = 1.0) -> None:
        """Replace the sampling ratios, in place: ``ratios`` by ``service.name`` of the
        resource, ``default`` for every other service. As in OpenTelemetry's consistent
        probability sampling, a span is kept when its trace id's randomness (its rightmost 7
        bytes, big-endian) is at least the threshold ``(1 - ratio) * 2**56``, rounded up to an
        integer: 1.0 keeps all, 0.0 none, a trace is kept or dropped whole by every service at
        one ratio, and behind an OpenTelemetry consistent sampler a lower ratio keeps what it
        would keep alone. ``ValueError`` names a ratio outside [0, 1]."""
    def start_seqs_at(self, next: int) -> None:
        """Sequence numbers given out from now on start at ``next`` or above."""
    def block_due(self, now_ns: int) -> bool: ...
    def take_block(self, now_ns: int, *, force: bool = False) -> TraceBlock | None:
        """Cut a block of everything waiting when one is due (always with ``force``);
        ``None`` when nothing waits."""
    @property
    def pending_spans(self) -> int: ...

def read_trace_json(frames: list[tuple[bytes, bytes]], *, tempo: bool = False) -> str:
    """Stored frames of one trace, each with its block's dictionary (empty: none) → OTLP JSON
    (``{"batches": ...}`` with ``tempo``), each span once; ``DecodeError`` when a frame does
    not decompress or decode."""

def attribute_hash(pair: str) -> int:
    """The search hash (the low 32 bits of xxh3-64, as a signed integer) of a ``key=value``
    span attribute, as ``trace_index.attributes`` holds it."""

def read_trace_protobuf(frames: list[tuple[bytes, bytes]]) -> bytes:
    """Stored frames of one trace (with their blocks' dictionaries) → an encoded
    ``TracesData``, each span once."""
