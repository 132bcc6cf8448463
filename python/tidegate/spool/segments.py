"""The segment files of a spool directory: what the spool keeps of each, the directory lock,
creating one, and recovery on open (the policy is in the ``tidegate.spool``
docstring)."""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tidegate._core import SpoolGroupWriter
from tidegate.spool.direct_io import create_segment_file
from tidegate.spool.records import FILE_HEADER, SpoolError, SpoolRecord, _scan
from tidegate.spool.seqset import SeqSet

# The package's name, not __name__: every spool message keeps the one logger name.
log = logging.getLogger("tidegate.spool")

_SEGMENT_NAME = re.compile(r"(\d{16})\.seg")


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


class _Recovery:
    """Recovery, run by Spool.__init__ before the writer thread starts. ``run()`` leaves every
    segment found, oldest first, in ``segments``, and the next segment's number in
    ``next_number``."""

    def __init__(
        self, directory: Path, *, fsync: bool, fsync_function: Callable[[int], None]
    ) -> None:
        self._directory = directory
        self._fsync = fsync
        self._fsync_function = fsync_function
        self.segments: list[_Segment] = []
        self.next_number = 1

    def run(self) -> RecoveryReport:
        numbers = sorted(
            int(match[1])
            for name in os.listdir(self._directory)
            if (match := _SEGMENT_NAME.fullmatch(name))
        )
        reports = []
        for number in numbers:
            segment = _Segment(number, self._directory / f"{number:016d}.seg")
            reports.append(self._recover_segment(segment, last=number == numbers[-1]))
            self.segments.append(segment)
        self.next_number = numbers[-1] + 1 if numbers else 1
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


def _create_segment(
    directory: Path,
    number: int,
    *,
    fsync: bool,
    fsync_function: Callable[[int], None],
    direct: bool,
) -> tuple[_Segment, int, SpoolGroupWriter]:
    """Create segment ``number`` holding only the file header, with the header and the
    directory entry fsynced unless ``fsync`` is off; return it, its ``O_APPEND`` fd and the
    writer for its groups (``create_segment_file``: ``O_DIRECT`` if ``direct`` and the
    filesystem allows it)."""
    path = directory / f"{number:016d}.seg"
    fd, writer, written = create_segment_file(path, FILE_HEADER, direct=direct)
    try:
        if fsync:
            fsync_function(fd)
            directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fsync_function(directory_fd)
            finally:
                os.close(directory_fd)
    except BaseException:
        os.close(fd)
        raise
    return _Segment(number, path, size=written), fd, writer


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
