"""Opening a new segment file for ``O_DIRECT`` writes, or through the page cache where the
filesystem refuses them, and writing its header: the ``SpoolGroupWriter`` it returns then
writes every group of the segment the same way.

With ``O_DIRECT`` a group (its records, then a padding record up to the next multiple of
``ALIGN``) is laid out in one aligned buffer that the core keeps from group to group, and the
device reads it from there: a record's bytes never pass through the page cache. Through the
page cache every request was copied into freshly allocated cache pages, which the spool
fills at tens of MB/s and never reads back but after a crash; those pages cost more than the
copy (bench/RESULTS.md measured the copy at 13-15 % of the daemon's CPU on a virtual
machine, where a fresh page is also a fault in the host) and push PostgreSQL's pages out of
the cache.

``ALIGN`` is 4096 rather than a 512-byte sector even where the device takes 512: every group
then starts on a block of its own, so writing it never rewrites a block that holds records
already acknowledged (a drive with 4 KiB physical blocks rewrites a whole one)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

from tidegate._core import SpoolGroupWriter

# The package's name, not __name__: every spool message keeps the one logger name.
log = logging.getLogger("tidegate.spool")

ALIGN = 4096
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC


def create_segment_file(
    path: Path, header: bytes, *, direct: bool
) -> tuple[int, SpoolGroupWriter, int]:
    """Create ``path`` and write ``header`` (not fsynced); return the fd, opened
    ``O_APPEND``, the writer for its groups and the bytes written. The writer aligns and pads
    with ``O_DIRECT`` when ``direct`` is asked for and the filesystem takes it (the header is
    then padded too), and writes back to back through the page cache otherwise."""
    if direct:
        try:
            return _create(path, header, os.O_DIRECT, ALIGN)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            log.info("spool %s: O_DIRECT refused, writing through the page cache: %s", path, exc)
    return _create(path, header, 0, 1)


def _create(
    path: Path, header: bytes, extra_flags: int, align: int
) -> tuple[int, SpoolGroupWriter, int]:
    writer = SpoolGroupWriter(align)
    try:
        fd = os.open(path, _FLAGS | extra_flags, 0o644)
    except OSError as exc:
        # Some filesystems create the file before they refuse a flag.
        if extra_flags and exc.errno == errno.EINVAL:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        raise
    try:
        written = writer.write_group(fd, [], sync=False, prefix=header)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return fd, writer, written
