"""Writing segments with ``O_DIRECT``: the writer thread copies a group's records into one
page-aligned buffer, pads it with zeros to a multiple of ``ALIGN`` and writes it straight to
the device, so a record's bytes never pass through the page cache.

Why: through the page cache every request is copied into freshly allocated cache pages,
which the spool fills at tens of MB/s and never reads back but after a crash. Those pages
cost more than the copy (bench/RESULTS.md measured the copy at 13-15 % of the daemon's CPU on
a virtual machine, where a fresh page is also a fault in the host) and push PostgreSQL's pages
out of the cache. The one buffer here is reused from group to group.

The padding's zeros are part of the segment: recovery skips zeros from the end of a record up
to the next ``ALIGN`` boundary (the ``tidegate.spool`` docstring). A filesystem that refuses
``O_DIRECT`` (tmpfs, some network filesystems) gets the page-cache path instead."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Sequence

# Every offset and length of an O_DIRECT write is a multiple of this: the logical block size
# of every common device (512 or 4096) divides it.
ALIGN = 4096
_ZEROS = bytes(ALIGN)
# The buffer's size to start with and to go back to after an unusually large group.
_DEFAULT_BUFFER = 8 * 2**20


def aligned(size: int) -> int:
    """``size`` rounded up to a multiple of ``ALIGN``."""
    return -(-size // ALIGN) * ALIGN


def is_padding(data: bytes, pos: int) -> bool:
    """Whether ``data[pos:]`` up to the next ``ALIGN`` boundary (inside ``data``) is zeros
    that pad a group written with ``O_DIRECT``. At a boundary there is nothing to pad."""
    end = aligned(pos)
    return pos < end <= len(data) and data.count(0, pos, end) == end - pos


class DirectIOUnsupportedError(OSError):
    """The filesystem does not take ``O_DIRECT`` writes."""


def open_direct(path: str | os.PathLike[str], flags: int, header: bytes) -> int:
    """Create ``path`` with ``O_DIRECT`` added to ``flags`` and write ``header`` padded to
    ``ALIGN``; return the fd. Raises DirectIOUnsupportedError, with the file removed, if the
    filesystem refuses either step."""
    try:
        fd = os.open(path, flags | os.O_DIRECT, 0o644)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            # Some filesystems create the file before they refuse the flag.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise DirectIOUnsupportedError(exc.errno, f"O_DIRECT refused for {path}") from exc
        raise
    buffer = AlignedBuffer(ALIGN)
    try:
        write_direct(fd, buffer.fill([header]))
    except OSError as exc:
        os.close(fd)
        os.unlink(path)
        if exc.errno == errno.EINVAL:
            raise DirectIOUnsupportedError(exc.errno, f"O_DIRECT write refused for {path}") from exc
        raise
    finally:
        buffer.release()
    return fd


class AlignedBuffer:
    """A page-aligned buffer (an anonymous mapping) that ``fill`` lays a group out in."""

    def __init__(self, size: int = _DEFAULT_BUFFER) -> None:
        self._map, self._view = self._allocate(size)

    @staticmethod
    def _allocate(size: int) -> tuple[mmap.mmap, memoryview]:
        mapping = mmap.mmap(-1, aligned(size))
        return mapping, memoryview(mapping)

    def fill(self, parts: Sequence[bytes | memoryview]) -> memoryview:
        """``parts`` one after another, then zeros to the next ``ALIGN`` boundary: a view of
        the buffer, valid until the next ``fill``."""
        size = sum(len(part) for part in parts)
        padded = aligned(size)
        if padded > len(self._map) or len(self._map) > max(2 * padded, _DEFAULT_BUFFER):
            self.release()
            self._map, self._view = self._allocate(max(padded, _DEFAULT_BUFFER))
        view = self._view
        pos = 0
        for part in parts:
            view[pos : pos + len(part)] = part
            pos += len(part)
        view[pos:padded] = _ZEROS[: padded - pos]
        return view[:padded]

    def release(self) -> None:
        self._view.release()
        self._map.close()


def write_direct(fd: int, view: memoryview) -> int:
    """Write all of ``view`` (a multiple of ``ALIGN`` bytes from ``AlignedBuffer.fill``)."""
    total = 0
    while total < len(view):
        written = os.write(fd, view[total:])
        if written == 0:
            raise OSError(errno.EIO, "write wrote nothing")
        total += written
    return total
