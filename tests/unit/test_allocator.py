"""The daemon's allocators keep freed memory mapped (`tidegate.allocator`).

Each case runs in a fresh interpreter: allocator settings last for the whole process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

# Forty blocks of 100 KiB (under glibc's default mmap threshold, so from the heap), touched,
# freed (4 MiB free at the top of the heap), then the same again: the second round's page
# faults show whether the first round's pages were given back.
CHILD = """
import json, resource, sys
if sys.argv[1] == "keep":
    from tidegate.allocator import keep_freed_memory
    settings = keep_freed_memory()
else:
    settings = []
from tidegate._core import freed_memory_delay

def round_():
    blocks = [b"x" * (100 * 1024) for _ in range(40)]
    del blocks

round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"faults": faults, "core_ms": freed_memory_delay(), "settings": settings}))
"""


def run_child(mode: str, env: dict[str, str] | None = None) -> dict[str, object]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "MIMALLOC_"))
    }
    environment.update(env or {})
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], env=environment, capture_output=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's heap trimming")
def test_freed_heap_memory_is_reused_without_faults() -> None:
    default = run_child("default")
    kept = run_child("keep")
    # 4 MiB trimmed and faulted back in: about 1,000 pages; kept: none of them.
    assert default["faults"] >= 500, default
    assert kept["faults"] < 50, kept


def test_core_keeps_freed_memory_ten_seconds() -> None:
    default = run_child("default")
    kept = run_child("keep")
    assert default["core_ms"] == 1000
    assert kept["core_ms"] == 10_000
    assert "core keeps freed memory 10000 ms" in kept["settings"]  # type: ignore[operator]


def test_environment_wins() -> None:
    kept = run_child(
        "keep",
        {
            "MIMALLOC_PURGE_DELAY": "250",
            "MALLOC_TRIM_THRESHOLD_": "131072",
            "MALLOC_MMAP_THRESHOLD_": "131072",
        },
    )
    assert kept["core_ms"] == 250
    assert kept["settings"] == []
    if platform.libc_ver()[0] == "glibc":
        # The environment's small trim threshold stands: the heap top goes back again.
        assert kept["faults"] >= 500, kept
