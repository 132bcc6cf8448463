"""The durable spool: a write-ahead log of accepted OTLP Export requests.

Every accepted request is appended, and fsynced, before its client is answered. Sinks commit
to PostgreSQL with the spool position they cover (a ``SeqSet``); after a restart the records
not yet committed are replayed with ``Spool.records(skip=committed)``, and
``Spool.release(committed)`` deletes the segments every sink has committed. One ``Spool`` owns
one directory (an exclusive ``flock`` on ``<directory>/LOCK`` enforces it).

Sequence numbers are the caller's: unique, starting at 1, possibly out of order. After a
restart they must continue above ``recovery.max_seq``: every seq up to it counts as durable,
since one that is not on disk was either released or lost before it was acknowledged.

On-disk format. Segment files ``<number:016d>.seg``, numbered upwards from one more than the
highest existing number. A segment is the 8-byte header ``b"TGSPOOL1"`` then records, every
integer little-endian::

    record = magic u32 (0x54475231) | body_length u32 | crc32 u32 (zlib.crc32 of body) | body
    body   = seq u64 | now_ns i64 | flags u8 | tenant_len u16 | request_hash (16 bytes)
             | tenant (utf-8, tenant_len bytes) | payload (the rest of the body)

A writer thread takes every record queued (up to 4 MiB or IOV_MAX / 3 records), writes them
with one ``os.writev`` to a file opened ``O_APPEND`` and fsyncs once (group commit); there is
no user-space buffer, so written bytes are in the file even before their fsync. With
``fsync=False`` nothing is fsynced and a record is durable once written. A segment ends after
the group that takes it past ``segment_bytes``; the next one's header and directory entry are
fsynced before it is used. Appends go only to a segment this process created, never after a
recovered tail. ``release()`` deletes a sealed segment once all its valid records are
committed, so an empty one goes at the first call.

Recovery, on open. A record is valid when its magic, length (within the file), CRC and body
check. From an invalid position the scan looks for the next valid record:

- found: the bytes between are one corrupt region, counted, logged at WARNING with the file
  name and offset, and never replayed;
- not found, in the last segment: a torn tail (a write cut short by a crash), truncated off
  and fsynced;
- not found, in an earlier segment: counted and logged as corrupt, left in place.

A segment with a wrong header counts as one corrupt region of its whole size and is ignored
from then on: never replayed, never released (an operator removes it). An empty segment (no
bytes, or the header only) is fine; in the last segment a header cut short is a torn tail.
Damaged content never makes opening fail; an I/O error does (SpoolError).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import fcntl
import functools
import logging
import os
import queue
import re
import struct
import threading
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tidegate._core import TidegateError

log = logging.getLogger(__name__)

FILE_HEADER = b"TGSPOOL1"
RECORD_MAGIC = 0x54475231
_RECORD_HEAD = struct.Struct("<III")
_BODY_HEAD = struct.Struct("<QqBH16s")
_MAGIC_BYTES = _RECORD_HEAD.pack(RECORD_MAGIC, 0, 0)[:4]
_SEGMENT_NAME = re.compile(r"(\d{16})\.seg")
# Bounds on one group: one writev takes three buffers a record, and past a few MiB one write
# gains nothing per fsync while the group's first record waits for all of it (bench_spool).
_GROUP_RECORDS = os.sysconf("SC_IOV_MAX") // 3
_GROUP_BYTES = 4 * 2**20


class SpoolError(TidegateError):
    """The spool cannot do what was asked (its directory cannot be opened or is in use)."""


class SpoolFatalError(SpoolError):
    """A write or fsync failed: nothing may be acknowledged on top of it. The spool takes no
    more appends; restart, and recovery decides what survived."""


class SpoolClosedError(SpoolError):
    """The spool was closed."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One accepted Export request, as it is spooled and replayed."""

    seq: int  # u64 from 1, assigned by the caller
    now_ns: int  # i64: the ingest wall clock the request was judged at; replay reuses it
    tenant: str  # at most 65535 utf-8 bytes
    request_hash: bytes  # exactly 16 bytes
    payload: bytes  # the raw request bytes
    flags: int = 0  # u8: the admission decisions

    def __post_init__(self) -> None:
        if not 0 < self.seq < 2**64:
            raise ValueError(f"seq must be in 1..2**64-1, not {self.seq}")
        if not -(2**63) <= self.now_ns < 2**63:
            raise ValueError(f"now_ns must fit in an i64, not {self.now_ns}")
        if not 0 <= self.flags < 2**8:
            raise ValueError(f"flags must fit in a u8, not {self.flags}")
        if len(self.request_hash) != 16:
            raise ValueError(f"request_hash must be 16 bytes, not {len(self.request_hash)}")
        tenant_bytes = len(self.tenant.encode())
        if tenant_bytes >= 2**16:
            raise ValueError(f"tenant must be at most 65535 utf-8 bytes, not {tenant_bytes}")
        if _BODY_HEAD.size + tenant_bytes + len(self.payload) >= 2**32:
            raise ValueError(f"payload of {len(self.payload)} bytes does not fit in a record")


class SeqSet:
    """A set of sequence numbers: a floor (every seq from 1 to it is in) plus the extras above
    floor + 1. Seqs start at 1, so ``SeqSet()`` is empty. Holds what is durable, and what a
    sink has committed."""

    __slots__ = ("_extras", "_floor")

    def __init__(self, floor: int = 0, extras: Iterable[int] = ()) -> None:
        if floor < 0:
            raise ValueError(f"floor must be >= 0, not {floor}")
        self._floor = floor
        self._extras: set[int] = set()
        self.update(extras)

    @property
    def floor(self) -> int:
        return self._floor

    @property
    def extras(self) -> tuple[int, ...]:
        return tuple(sorted(self._extras))

    def add(self, seq: int) -> None:
        """Add ``seq``, then raise the floor over every extra it now reaches."""
        if seq < 1:
            raise ValueError(f"seqs start at 1, not {seq}")
        if seq > self._floor + 1:
            self._extras.add(seq)
            return
        floor = max(seq, self._floor)
        while floor + 1 in self._extras:
            floor += 1
            self._extras.remove(floor)
        self._floor = floor

    def update(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            self.add(seq)

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and (1 <= seq <= self._floor or seq in self._extras)

    def covers(self, seqs: Iterable[int]) -> bool:
        """Whether every one of ``seqs`` is in the set."""
        return all(seq in self for seq in seqs)

    def copy(self) -> SeqSet:
        clone = SeqSet(self._floor)
        clone._extras = set(self._extras)
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeqSet):
            return NotImplemented
        return self._floor == other._floor and self._extras == other._extras

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"SeqSet(floor={self._floor}, extras={self.extras})"


@dataclass(frozen=True)
class RecoveryReport:
    """What opening the spool found. ``segments`` counts every segment file, ignored ones too;
    ``records`` the valid records; ``bytes`` the segment files' size after truncation."""

    segments: int = 0
    records: int = 0
    bytes: int = 0
    torn_tail_bytes: int = 0
    corrupt_records: int = 0
    corrupt_bytes: int = 0
    max_seq: int = 0


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    size: int = 0  # bytes whose records are durable, the extent records() reads
    seqs: array[int] = field(default_factory=lambda: array("Q"))
    max_seq: int = 0
    ignored: bool = False  # wrong header: never replayed, never released

    def add(self, seqs: list[int]) -> None:
        if seqs:
            self.seqs.extend(seqs)
            self.max_seq = max(self.max_seq, *seqs)

    def covered_by(self, committed: SeqSet) -> bool:
        return self.max_seq <= committed.floor or committed.covers(self.seqs)


@dataclass(frozen=True, slots=True)
class _Damage:
    start: int
    end: int
    tail: bool  # no valid record follows


@dataclass(eq=False, slots=True)
class _Pending:
    record: SpoolRecord
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


@dataclass(eq=False, slots=True)
class _Waiter:
    missing: list[int]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


class Spool:
    """The write-ahead log in one directory; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 * 2**20,
        fsync: bool = True,
        fsync_function: Callable[[int], None] = os.fdatasync,
    ) -> None:
        """Open ``directory`` (created if missing), recover what it holds and start a new
        segment for appends. With ``fsync=False`` nothing is fsynced and a record counts as
        durable once written (memory speed: for tests and benchmarks)."""
        if segment_bytes <= len(FILE_HEADER):
            raise ValueError(f"segment_bytes must be more than {len(FILE_HEADER)}")
        self._directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._fsync_function = fsync_function
        # Guards what both the writer thread and callers touch: segments, durable, waiters,
        # listeners and the state flags.
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._segments: list[_Segment] = []
        self._active: _Segment
        self._waiters: list[_Waiter] = []
        self._listeners: list[Callable[[BaseException], None]] = []
        self._failure: BaseException | None = None  # the write or fsync error
        self._closed = False  # no more appends are taken
        self._stopped = False  # the writer thread has finished
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock_directory(self._directory)
        except OSError as exc:
            raise SpoolError(f"cannot open spool directory {self._directory}: {exc}") from exc
        try:
            try:
                self.recovery = self._recover()
                self._durable = SeqSet(self.recovery.max_seq)
                self._fd = self._new_segment()
            except OSError as exc:
                raise SpoolError(f"cannot recover spool {self._directory}: {exc}") from exc
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._thread = threading.Thread(
            target=self._write_loop, name=f"tidegate-spool-{self._directory.name}", daemon=True
        )
        self._thread.start()

    @property
    def durable(self) -> SeqSet:
        """The seqs whose records are fsynced (a copy)."""
        with self._lock:
            return self._durable.copy()

    @property
    def size_bytes(self) -> int:
        """Bytes of every segment file, ignored ones included."""
        with self._lock:
            return sum(segment.size for segment in self._segments)

    @property
    def record_count(self) -> int:
        """Records in the segments not yet released."""
        with self._lock:
            return sum(len(segment.seqs) for segment in self._segments)

    def records(self, skip: SeqSet | None = None) -> Iterator[SpoolRecord]:
        """Every valid record on disk whose seq is not in ``skip``, in file order: what a
        restart replays. Each segment is read up to its durable size at the time of the call,
        so this runs safely alongside appends; a segment released meanwhile is passed over
        (every record in it was committed)."""
        with self._lock:
            extents = [(s.path, s.size) for s in self._segments if not s.ignored]
        return _replay(extents, None if skip is None else skip.copy())

    async def append(self, record: SpoolRecord) -> None:
        """Return once ``record`` is written and fsynced (written, with fsync off).

        Raises SpoolFatalError once a write or fsync has failed, SpoolClosedError after
        ``close()``, ValueError for a seq that is already durable. Cancelling the call does not
        withdraw the record."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._failure is not None:
                raise self._fatal_error()
            if self._closed:
                raise SpoolClosedError(f"spool {self._directory} is closed")
            if record.seq in self._durable:
                raise ValueError(
                    f"seq {record.seq} is already durable: seqs are unique and, after a "
                    f"restart, above recovery.max_seq ({self.recovery.max_seq})"
                )
            self._queue.put(_Pending(record, future, loop))
        await future

    def add_fatal_listener(self, callback: Callable[[BaseException], None]) -> None:
        """Call ``callback`` once with the SpoolFatalError if a write or fsync fails (at once if
        one already has). It runs on the writer thread: hand work to a loop with
        ``call_soon_threadsafe``."""
        with self._lock:
            if self._failure is None:
                self._listeners.append(callback)
                return
        _notify(callback, self._fatal_error())

    async def wait_durable(self, seqs: Iterable[int]) -> None:
        """Return once every one of ``seqs`` is durable. Raises SpoolFatalError if the spool
        failed first, SpoolClosedError if it was closed first."""
        loop = asyncio.get_running_loop()
        with self._lock:
            missing = [seq for seq in seqs if seq not in self._durable]
            if not missing:
                return
            if self._failure is not None:
                raise self._fatal_error()
            if self._stopped:
                raise SpoolClosedError(f"spool {self._directory} is closed")
            waiter = _Waiter(missing, loop.create_future(), loop)
            self._waiters.append(waiter)
        try:
            await waiter.future
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def release(self, committed: SeqSet) -> int:
        """Delete every sealed segment all of whose records' seqs are in ``committed``, those
        recovered at startup included; return the bytes freed. The segment being appended to
        and ignored segments stay."""
        with self._lock:
            sealed = [s for s in self._segments if s is not self._active and not s.ignored]
        # Sealed segments no longer change, so they are checked without the lock.
        doomed = [segment for segment in sealed if segment.covered_by(committed)]
        freed = 0
        gone = set()
        for segment in doomed:
            try:
                segment.path.unlink()
            except FileNotFoundError:
                pass  # deleted by a concurrent release: no bytes to count twice
            except OSError as exc:
                log.warning(
                    "spool: cannot delete %s, kept for a later release: %s", segment.path, exc
                )
                continue
            else:
                freed += segment.size
            gone.add(segment.number)
        with self._lock:
            self._segments = [s for s in self._segments if s.number not in gone]
        return freed

    async def close(self) -> None:
        """Finish the appends already taken (written and fsynced), stop the writer thread and
        let the directory go. Later appends raise SpoolClosedError. Calling it again is a
        no-op."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        with self._lock:
            lock_fd, self._lock_fd = self._lock_fd, -1
        if lock_fd >= 0:
            os.close(lock_fd)

    # Recovery, run by __init__ before the writer thread starts.

    def _recover(self) -> RecoveryReport:
        numbers = sorted(
            int(match[1])
            for name in os.listdir(self._directory)
            if (match := _SEGMENT_NAME.fullmatch(name))
        )
        reports = []
        for number in numbers:
            segment = _Segment(number, self._directory / f"{number:016d}.seg")
            reports.append(self._recover_segment(segment, last=number == numbers[-1]))
            self._segments.append(segment)
        self._next_number = numbers[-1] + 1 if numbers else 1
        totals = {
            f.name: sum(getattr(report, f.name) for report in reports)
            for f in dataclasses.fields(RecoveryReport)
        }
        totals["max_seq"] = max((report.max_seq for report in reports), default=0)
        report = RecoveryReport(**totals)
        log.info("spool %s: recovered %s", self._directory, report)
        return report

    def _recover_segment(self, segment: _Segment, *, last: bool) -> RecoveryReport:
        data = segment.path.read_bytes()
        if not data:
            return RecoveryReport(segments=1)
        if not data.startswith(FILE_HEADER):
            if last and FILE_HEADER.startswith(data):  # a crash cut the header's write short
                log.warning(
                    "spool %s: truncated a torn header of %d bytes", segment.path, len(data)
                )
                self._sync_file(segment.path, truncate_at=0)
                return RecoveryReport(segments=1, torn_tail_bytes=len(data))
            log.warning("spool %s: wrong file header, segment ignored and kept", segment.path)
            segment.ignored = True
            segment.size = len(data)
            return RecoveryReport(
                segments=1, bytes=len(data), corrupt_records=1, corrupt_bytes=len(data)
            )
        seqs: list[int] = []
        torn = corrupt_records = corrupt_bytes = 0
        for item in _scan(data):
            if isinstance(item, SpoolRecord):
                seqs.append(item.seq)
            elif item.tail and last:
                torn = item.end - item.start
                log.warning(
                    "spool %s: truncated a torn tail of %d bytes at offset %d",
                    segment.path,
                    torn,
                    item.start,
                )
            else:
                corrupt_records += 1
                corrupt_bytes += item.end - item.start
                log.warning(
                    "spool %s: skipped %d corrupt bytes at offset %d",
                    segment.path,
                    item.end - item.start,
                    item.start,
                )
        segment.add(seqs)
        segment.size = len(data) - torn
        self._sync_file(segment.path, truncate_at=segment.size if torn else None)
        return RecoveryReport(
            segments=1,
            records=len(seqs),
            bytes=segment.size,
            torn_tail_bytes=torn,
            corrupt_records=corrupt_records,
            corrupt_bytes=corrupt_bytes,
            max_seq=segment.max_seq,
        )

    def _sync_file(self, path: Path, *, truncate_at: int | None) -> None:
        """Truncate a recovered segment if asked, and fsync it: what is replayed, and counted
        as durable, must be on disk even if only the process, not the machine, had died."""
        if truncate_at is None and not self._fsync:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if truncate_at is not None:
                os.ftruncate(fd, truncate_at)
            if self._fsync:
                self._fsync_function(fd)
        finally:
            os.close(fd)

    # The writer thread.

    def _new_segment(self) -> int:
        """Create the next segment, make it the active one and return its fd."""
        number = self._next_number
        segment = _Segment(number, self._directory / f"{number:016d}.seg", size=len(FILE_HEADER))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(segment.path, flags, 0o644)
        try:
            _write_all(fd, [FILE_HEADER])
            if self._fsync:
                self._fsync_function(fd)
                directory_fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    self._fsync_function(directory_fd)
                finally:
                    os.close(directory_fd)
        except BaseException:
            os.close(fd)
            raise
        self._next_number = number + 1
        with self._lock:
            self._segments.append(segment)
            self._active = segment
        return fd

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            group, stop = self._take_group()
            if group:
                self._commit(group)
        with self._lock:
            self._stopped = True
            waiters, self._waiters = self._waiters, []
        message = f"spool {self._directory} closed before the seqs were durable"
        _settle(waiters, functools.partial(SpoolClosedError, message))
        try:
            os.close(self._fd)
        except OSError as exc:
            log.warning("spool %s: closing the active segment failed: %s", self._directory, exc)

    def _take_group(self) -> tuple[list[_Pending], bool]:
        """Everything queued (up to _GROUP_BYTES), waiting for the first; and whether close()
        was asked for, which nothing is queued after."""
        group: list[_Pending] = []
        size = 0
        item = self._queue.get()
        while item is not None:
            group.append(item)
            size += len(item.record.payload)
            if size >= _GROUP_BYTES or len(group) >= _GROUP_RECORDS:
                return group, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return group, False
        return group, True

    def _commit(self, group: list[_Pending]) -> None:
        """Write and fsync one group, mark it durable, then answer its appends and waiters."""
        if self._failure is not None:
            _settle(group, self._fatal_error)
            return
        try:
            parts: list[bytes] = []
            for pending in group:
                _encode(pending.record, parts)
            written = _write_all(self._fd, parts)
            if self._fsync:
                self._fsync_function(self._fd)
        except OSError as exc:
            self._fail(exc, group)
            return
        except Exception as exc:  # a bug, e.g. in fsync_function: fail rather than hang
            log.exception("spool %s: unexpected error in the writer thread", self._directory)
            self._fail(exc, group)
            return
        seqs = [pending.record.seq for pending in group]
        with self._lock:
            self._active.size += written
            self._active.add(seqs)
            self._durable.update(seqs)
            for waiter in self._waiters:
                waiter.missing = [seq for seq in waiter.missing if seq not in self._durable]
            ready = [waiter for waiter in self._waiters if not waiter.missing]
            self._waiters = [waiter for waiter in self._waiters if waiter.missing]
        if self._active.size > self._segment_bytes:
            # Rolled before answering, so the segment an append filled is sealed (releasable)
            # when the append returns. With fsync on, it is fsynced already: every group is.
            self._roll()
        _settle([*group, *ready])

    def _roll(self) -> None:
        old_fd = self._fd
        try:
            self._fd = self._new_segment()
        except OSError as exc:  # this group is durable; the appends after it fail
            self._fail(exc, [])
            return
        os.close(old_fd)

    def _fail(self, cause: BaseException, group: list[_Pending]) -> None:
        log.error("spool %s: failed, no more appends are taken: %s", self._directory, cause)
        with self._lock:
            self._failure = cause
            waiters, self._waiters = self._waiters, []
            listeners, self._listeners = self._listeners, []
        _settle([*group, *waiters], self._fatal_error)
        error = self._fatal_error()
        for listener in listeners:
            _notify(listener, error)

    def _fatal_error(self) -> SpoolFatalError:
        error = SpoolFatalError(
            f"spool {self._directory}: a write or fsync failed ({self._failure}); nothing more "
            "is accepted, restart the daemon to recover"
        )
        error.__cause__ = self._failure
        return error


def _lock_directory(directory: Path) -> int:
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise SpoolError(f"spool directory {directory} is in use by another Spool") from exc
    except OSError:
        os.close(fd)
        raise
    return fd


def _encode(record: SpoolRecord, parts: list[bytes]) -> None:
    """Append the record's three pieces to ``parts``; the payload is not copied."""
    tenant = record.tenant.encode()
    head = _BODY_HEAD.pack(
        record.seq, record.now_ns, record.flags, len(tenant), record.request_hash
    )
    head += tenant
    crc = zlib.crc32(record.payload, zlib.crc32(head))
    length = len(head) + len(record.payload)
    parts += (_RECORD_HEAD.pack(RECORD_MAGIC, length, crc), head, record.payload)


def _decode_at(view: memoryview, pos: int) -> tuple[SpoolRecord, int] | None:
    """The valid record at ``pos`` and the offset after it, or None."""
    body = pos + _RECORD_HEAD.size
    if body > len(view):
        return None
    magic, length, crc = _RECORD_HEAD.unpack_from(view, pos)
    end = body + length
    if magic != RECORD_MAGIC or length < _BODY_HEAD.size or end > len(view):
        return None
    if zlib.crc32(view[body:end]) != crc:
        return None
    seq, now_ns, flags, tenant_len, request_hash = _BODY_HEAD.unpack_from(view, body)
    tenant_end = body + _BODY_HEAD.size + tenant_len
    if tenant_end > end:
        return None
    try:
        tenant = bytes(view[body + _BODY_HEAD.size : tenant_end]).decode()
        record = SpoolRecord(seq, now_ns, tenant, request_hash, bytes(view[tenant_end:end]), flags)
    except ValueError:  # a body with a good CRC that breaks the format: seq 0, bad utf-8
        return None
    return record, end


def _scan(data: bytes) -> Iterator[SpoolRecord | _Damage]:
    """The records and damaged regions of a segment's bytes, after its header."""
    view = memoryview(data)
    pos = len(FILE_HEADER)
    while pos < len(data):
        found = _decode_at(view, pos)
        if found is not None:
            record, pos = found
            yield record
            continue
        resume = data.find(_MAGIC_BYTES, pos + 1)
        while resume != -1 and _decode_at(view, resume) is None:
            resume = data.find(_MAGIC_BYTES, resume + 1)
        if resume == -1:
            yield _Damage(pos, len(data), tail=True)
            return
        yield _Damage(pos, resume, tail=False)
        pos = resume


def _replay(extents: list[tuple[Path, int]], skip: SeqSet | None) -> Iterator[SpoolRecord]:
    for path, size in extents:
        try:
            with path.open("rb") as file:
                data = file.read(size)
        except FileNotFoundError:
            continue  # released since records() was called
        for item in _scan(data):
            if isinstance(item, SpoolRecord) and (skip is None or item.seq not in skip):
                yield item


def _write_all(fd: int, parts: list[bytes]) -> int:
    """Write ``parts`` in order with one writev unless the kernel takes less; no copy."""
    buffers: list[bytes | memoryview] = [part for part in parts if part]
    total = first = 0
    while first < len(buffers):
        written = os.writev(fd, buffers[first:])
        if written == 0:
            raise OSError(errno.EIO, "writev wrote nothing")
        total += written
        while first < len(buffers) and written >= len(buffers[first]):
            written -= len(buffers[first])
            first += 1
        if written:
            buffers[first] = memoryview(buffers[first])[written:]
    return total


def _settle(
    items: Iterable[_Pending | _Waiter], error: Callable[[], BaseException] | None = None
) -> None:
    """Resolve the futures, with ``error()`` if given, on their own loops: one wake-up per
    loop for the whole group rather than one per future."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for item in items:
        by_loop.setdefault(item.loop, []).append(item.future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, futures, error)
        except RuntimeError:  # the loop is closed: nobody awaits these futures any more
            log.debug("spool: %d futures belong to a closed loop", len(futures))


def _resolve(
    futures: list[asyncio.Future[None]], error: Callable[[], BaseException] | None
) -> None:
    for future in futures:
        if future.done():  # cancelled by its caller
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error())


def _notify(listener: Callable[[BaseException], None], error: SpoolFatalError) -> None:
    try:
        listener(error)
    except Exception:
        log.exception("spool: a fatal listener raised")
