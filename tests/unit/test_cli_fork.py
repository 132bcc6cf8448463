"""The daemon forks while gRPC threads run (embedded PostgreSQL's tools run as their own
system user), so the ``tidegate`` command turns gRPC's fork handlers off before gRPC is
imported. gRPC logs, at debug verbosity, each fork its handlers see."""

from __future__ import annotations

import os
import subprocess
import sys

FORK_WHILE_SERVING = """
import sys
if sys.argv[1] == "cli":
    import tidegate.cli
import asyncio, subprocess, grpc

async def main():
    server = grpc.aio.server()
    server.add_insecure_port("127.0.0.1:0")
    await server.start()
    subprocess.run(["true"], preexec_fn=lambda: None, check=True)  # fork, not vfork
    await server.stop(None)

asyncio.run(main())
"""


def fork_probe(first_import: str) -> tuple[int, list[str]]:
    """The probe's exit status and gRPC's messages about the fork."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    env["GRPC_VERBOSITY"] = "debug"
    done = subprocess.run(
        [sys.executable, "-c", FORK_WHILE_SERVING, first_import],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, [line for line in done.stderr.splitlines() if "fork()" in line]


def test_the_command_turns_grpc_fork_handlers_off() -> None:
    # Left on, gRPC's handlers see the fork; with both cores busy the forked child dies of
    # SIGABRT now and then (the probe then exits 1), which is why the command turns them off.
    _, messages = fork_probe("grpc")
    assert messages != [], "gRPC's handlers see a fork when left on"
    assert fork_probe("cli") == (0, [])
