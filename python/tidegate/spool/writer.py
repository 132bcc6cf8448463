"""``Spool``: the write-ahead log in one directory, the writer thread that group-commits its
appends, and the release of committed segments (the ``tidegate.spool`` docstring has the
whole design)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tidegate._core import SpoolGroupWriter
from tidegate.spool.futures import _notify, _Pending, _settle, _Waiter
from tidegate.spool.records import (
    FILE_HEADER,
    SpoolClosedError,
    SpoolError,
    SpoolFatalError,
    SpoolRecord,
    _replay,
)
from tidegate.spool.segments import (
    _create_segment,
    _lock_directory,
    _Recovery,
    _Segment,
)
from tidegate.spool.seqset import SeqSet

# The package's name, not __name__: every spool message keeps the one logger name.
log = logging.getLogger("tidegate.spool")

# Bounds on one group: past a few MiB one write gains nothing per fsync while the group's
# first record waits for all of it (bench_spool).
_GROUP_RECORDS = 1024
_GROUP_BYTES = 4 * 2**20


class Spool:
    """The write-ahead log in one directory; see the ``tidegate.spool`` docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 * 2**20,
        fsync: bool = True,
        fsync_function: Callable[[int], None] | None = None,
        direct_io: bool = True,
    ) -> None:
        """Open ``directory`` (created if missing), recover what it holds and start a new
        segment for appends. With ``fsync=False`` nothing is fsynced and a record counts as
        durable once written (memory speed: for tests and benchmarks). ``fsync_function``
        replaces ``os.fdatasync`` for every fsync (tests count and fail them); by default the
        core fsyncs each group in the same call that writes it. ``direct_io`` writes groups
        with ``O_DIRECT`` (``tidegate.spool.direct_io``) where the filesystem allows it; never
        with ``fsync=False``."""
        if segment_bytes <= len(FILE_HEADER):
            raise ValueError(f"segment_bytes must be more than {len(FILE_HEADER)}")
        self._directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        # The group's own fsync is the core's unless a function replaces it.
        self._sync_in_core = fsync and fsync_function is None
        self._fsync_function = fsync_function or os.fdatasync
        self._direct = direct_io and fsync
        self._writer: SpoolGroupWriter
        # Groups written and fsynced (benchmarks read it).
        self.groups_committed = 0
        # Guards what both the writer thread and callers touch: segments, durable, waiters,
        # listeners and the state flags.
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._segments: list[_Segment]  # oldest first; recovery finds them
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
                recovery = _Recovery(
                    self._directory, fsync=fsync, fsync_function=self._fsync_function
                )
                self.recovery = recovery.run()
                self._segments, self._next_number = recovery.segments, recovery.next_number
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

    def bytes_after(self, floor: int) -> int:
        """Bytes of the segments holding a record above ``floor`` (the active one always):
        about what is not yet stored when ``floor`` is the committed floor."""
        with self._lock:
            return sum(
                segment.size
                for segment in self._segments
                if segment.max_seq > floor or segment is self._active
            )

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
        self.submit(record, future, loop)
        await future

    def submit(
        self, record: SpoolRecord, future: asyncio.Future[None], loop: asyncio.AbstractEventLoop
    ) -> None:
        """Queue ``record`` from any thread; ``future`` (of ``loop``) gets its outcome as
        ``append`` would. Raises at once what ``append`` raises at once."""
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

    # The writer thread.

    def _new_segment(self) -> int:
        """Create the next segment, make it the active one and return its fd."""
        number = self._next_number
        segment, fd, self._writer = _create_segment(
            self._directory,
            number,
            fsync=self._fsync,
            fsync_function=self._fsync_function,
            direct=self._direct,
        )
        # A filesystem that refused O_DIRECT once is not asked again.
        self._direct = self._writer.align > 1
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
            records = [
                (r.seq, r.now_ns, r.flags, r.tenant.encode(), r.request_hash, r.payload)
                for r in (pending.record for pending in group)
            ]
            written = self._writer.write_group(self._fd, records, sync=self._sync_in_core)
            if self._fsync and not self._sync_in_core:
                self._fsync_function(self._fd)
        except OSError as exc:
            self._fail(exc, group)
            return
        except Exception as exc:  # a bug, e.g. in fsync_function: fail rather than hang
            log.exception("spool %s: unexpected error in the writer thread", self._directory)
            self._fail(exc, group)
            return
        self.groups_committed += 1
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
        except Exception as exc:  # noqa: BLE001 - this group is durable; the appends after it fail
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
