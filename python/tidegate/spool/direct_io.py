"""Writing segments with ``O_DIRECT``: the writer thread copies a group's records, and the
padding record that takes the segment to the next multiple of ``ALIGN``, into one
page-aligned buffer and writes it straight to the device, so a record's bytes never pass
through the page cache.

Why: through the page cache every request is copied into freshly allocated cache pages,
which the spool fills at tens of MB/s and never reads back but after a crash. Those pages
cost more than the copy (bench/RESULTS.md measured the copy at 13-15 % of the daemon's CPU on
a virtual machine, where a fresh page is also a fault in the host) and push PostgreSQL's pages
out of the cache. The one buffer here is reused from group to group.

``ALIGN`` is 4096 rather than a 512-byte sector even where the device takes 512: every group
then starts on a block of its own, so writing it never rewrites a block that holds records
already acknowledged (a drive with 4 KiB physical blocks rewrites a whole one). A filesystem
that refuses ``O_DIRECT`` gets the page-cache path instead."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Sequence

ALIGN = 4096
# The buffer's size to start with and to go back to after an unusually large group.
_DEFAULT_BUFFER = 8 * 2**20


class DirectIOUnsupportedError(OSError):
    """The filesystem does not take ``O_DIRECT`` writes."""


def open_direct(path: str | os.PathLike[str], flags: int, header: Sequence[bytes]) -> int:
    """Create ``path`` with ``O_DIRECT`` added to ``flags`` and write ``header`` (a multiple
    of ``ALIGN`` bytes in all); return the fd. Raises DirectIOUnsupportedError, with the file
    removed, if the filesystem refuses either step."""
    buffer = AlignedBuffer(ALIGN)
    try:
        try:
            fd = os.open(path, flags | os.O_DIRECT, 0o644)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                # Some filesystems create the file before they refuse the flag.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                raise DirectIOUnsupportedError(exc.errno, f"O_DIRECT refused for {path}") from exc
            raise
        try:
            write_direct(fd, buffer.fill(header))
        except OSError as exc:
            os.close(fd)
            os.unlink(path)
            if exc.errno == errno.EINVAL:
                raise DirectIOUnsupportedError(
                    exc.errno, f"O_DIRECT write refused for {path}"
                ) from exc
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
        mapping = mmap.mmap(-1, -(-size // ALIGN) * ALIGN)
        return mapping, memoryview(mapping)

    def fill(self, parts: Sequence[bytes | memoryview]) -> memoryview:
        """``parts`` one after another (a multiple of ``ALIGN`` bytes in all): a view of the
        buffer, valid until the next ``fill``."""
        size = sum(len(part) for part in parts)
        if size % ALIGN:
            raise ValueError(f"{size} bytes is not a multiple of {ALIGN}: the padding is missing")
        if size > len(self._map) or len(self._map) > max(2 * size, _DEFAULT_BUFFER):
            self.release()
            self._map, self._view = self._allocate(max(size, _DEFAULT_BUFFER))
        view = self._view
        pos = 0
        for part in parts:
            view[pos : pos + len(part)] = part
            pos += len(part)
        return view[:size]

    def release(self) -> None:
        """Unmap the buffer, or leave that to the garbage collector while a view of it is
        still alive (one held by the traceback of a failed write)."""
        self._view.release()
        with contextlib.suppress(BufferError):
            self._map.close()


def write_direct(fd: int, view: memoryview) -> int:
    """Write all of ``view`` (from ``AlignedBuffer.fill``)."""
    total = 0
    while total < len(view):
        written = os.write(fd, view[total:])
        if written == 0:
            raise OSError(errno.EIO, "write wrote nothing")
        total += written
    return total
