"""The daemon keeps the memory C malloc frees mapped (`tidegate.allocator`).

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

def round_():
    blocks = [b"x" * (100 * 1024) for _ in range(40)]
    del blocks

round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"faults": faults, "settings": settings}))
"""


def run_child(mode: str, env: dict[str, str] | None = None) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
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
    assert kept["settings"] == ["malloc_trim_threshold 67108864", "malloc_mmap_threshold 4194304"]
    # 4 MiB trimmed and faulted back in: about 1,000 pages; kept: none of them.
    assert default["faults"] >= 500, default
    assert kept["faults"] < 50, kept


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's heap trimming")
def test_environment_wins() -> None:
    kept = run_child(
        "keep",
        {"MALLOC_TRIM_THRESHOLD_": "131072", "MALLOC_MMAP_THRESHOLD_": "131072"},
    )
    assert kept["settings"] == []
    # The environment's small trim threshold stands: the heap top goes back again.
    assert kept["faults"] >= 500, kept
