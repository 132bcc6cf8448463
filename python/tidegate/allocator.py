"""How long the daemon's allocators keep the memory they free.

Under load the daemon frees and allocates blocks of the same sizes over and over: each
request's bytes and gRPC's receive buffers (C malloc), the core's batches and key tables
(mimalloc). With their defaults both give freed memory back to the kernel at once (glibc
trims the top of a heap past 128 KiB) or soon after (mimalloc, after a second), so the next
allocation of the same size faults the pages in again and the kernel zeroes them: about
11,000 page faults a second at 600,000 points/s, about 4 % of the daemon's CPU.

``keep_freed_memory`` keeps that memory mapped instead: the core's for ten seconds, glibc's
heaps until 64 MiB lie free at their top, blocks under 4 MiB taken from the heaps rather than
mapped one by one. What is kept is bounded by what the daemon used at its peak, which its
RSS already shows. An environment variable of either allocator, when set, wins.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

from tidegate._core import set_freed_memory_delay

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# mimalloc (the core): how long freed memory stays mapped, in milliseconds.
CORE_FREED_MEMORY_MS = 10_000
# glibc: free bytes at the top of a heap before it is trimmed, and the size from which a block
# is mapped on its own (and unmapped when freed).
GLIBC_TRIM_THRESHOLD = 64 * MIB
GLIBC_MMAP_THRESHOLD = 4 * MIB
# mallopt's parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> list[str]:
    """Set both allocators as above; returns what was set, for a log line."""
    settings = []
    if "MIMALLOC_PURGE_DELAY" not in os.environ:
        set_freed_memory_delay(CORE_FREED_MEMORY_MS)
        settings.append(f"core keeps freed memory {CORE_FREED_MEMORY_MS} ms")
    if platform.libc_ver()[0] == "glibc":
        settings += _glibc_thresholds()
    return settings


def _glibc_thresholds() -> list[str]:
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    settings = []
    for variable, parameter, value in (
        ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD),
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD),
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
