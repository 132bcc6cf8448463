"""`tidegate serve` under a stand-in for systemd: READY, watchdog pings and STOPPING arrive on
the socket in $NOTIFY_SOCKET, as a Type=notify unit with WatchdogSec= expects."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

TIDEGATE = [sys.executable, "-m", "tidegate.cli"]
WATCHDOG_USEC = 400_000  # pings every 0.2 s


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short directory of its own: unix socket paths are limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn-") as directory:
        path = str(Path(directory) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            yield sock, path


def receive(sock: socket.socket, process: subprocess.Popen[str], timeout: float) -> str:
    """The next datagram; fails if the daemon exits or nothing arrives in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(0.5)
        try:
            return sock.recv(4096).decode()
        except TimeoutError:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"tidegate exited with {process.returncode}:\n{output}")
    pytest.fail(f"no notification within {timeout} s")


def readyz(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return int(reply.status)


def test_ready_watchdog_and_stopping_reach_systemd(
    database_dsn: str, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    grpc_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDEGATE_", "WATCHDOG_"))}
    env |= {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    process = subprocess.Popen(
        [
            *TIDEGATE,
            "serve",
            "--dsn",
            database_dsn,
            "--data-dir",
            str(tmp_path),
            "--grpc-listen",
            f"127.0.0.1:{grpc_port}",
            "--http-listen",
            f"127.0.0.1:{http_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        # The first message is READY=1, and it means what /readyz means.
        first = receive(sock, process, timeout=90)
        assert first.splitlines() == [
            "READY=1",
            f"STATUS=OTLP/gRPC on port {grpc_port}, HTTP on port {http_port}",
        ]
        assert readyz(f"http://127.0.0.1:{http_port}/readyz") == 200

        started = time.monotonic()
        pings = [receive(sock, process, timeout=5) for _ in range(5)]
        assert pings == ["WATCHDOG=1"] * 5
        # Half of WATCHDOG_USEC apart: 5 pings take about 0.8 s (one or two may have been
        # queued before `started`), never a burst.
        assert 0.4 < time.monotonic() - started < 3.0

        process.send_signal(signal.SIGTERM)
        messages = [receive(sock, process, timeout=30)]
        while messages[-1] == "WATCHDOG=1":  # one may have been on its way
            messages.append(receive(sock, process, timeout=30))
        assert messages[-1].splitlines()[0] == "STOPPING=1"
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        # Nothing after STOPPING=1: the watchdog task was cancelled.
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
