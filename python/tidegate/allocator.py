"""How long C malloc keeps the memory the daemon frees.

Under load the daemon frees and allocates blocks of the same sizes over and over: each
request's bytes (about 150 KB) and gRPC's receive buffers. With its defaults glibc trims the
top of a heap as soon as 128 KiB lie free there (a little more once its thresholds have
adapted), so the next allocation of the same size faults the pages in again and the kernel
zeroes them: about 11,000 page faults a second at 600,000 points/s, with the core's own
allocator (mimalloc), about 4 % of the daemon's CPU.

``keep_freed_memory`` keeps glibc's heaps until 64 MiB lie free at their top, and takes blocks
under 4 MiB from the heaps instead of mapping each on its own. What is kept is bounded by what
the daemon used at its peak. ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_MMAP_THRESHOLD_`` in the
environment win. mimalloc's own delay (10 ms) stays: ten seconds took the peak RSS at 1 M
series from about 1.8 to 2.3 GB (``docs/architecture.md``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Free bytes at the top of a heap before it is trimmed, and the size from which a block is
# mapped on its own (and unmapped when freed).
TRIM_THRESHOLD = 64 * MIB
MMAP_THRESHOLD = 4 * MIB
# mallopt's parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> list[str]:
    """Set glibc's thresholds as above (nothing on another C library); returns what was set,
    for a log line."""
    if platform.libc_ver()[0] != "glibc":
        return []
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    settings = []
    for variable, parameter, value in (
        ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ):
        if variable in os.environ:
            continue
        if mallopt(parameter, value) == 1:
            settings.append(f"{variable.lower().strip('_')} {value}")
        else:
            log.warning(
                "mallopt(%d, %d) failed: %s left at its default", parameter, value, variable
            )
    return settings
