"""sd_notify against a real unix datagram socket, as systemd would listen on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidegate import sd_notify


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    # A short directory of its own: unix socket paths are limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn-") as directory:
        path = str(Path(directory) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(5)
            yield sock, path


def test_messages_arrive_as_sent(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sd_notify.notify("READY=1\nSTATUS=up")
    assert sd_notify.notify("STOPPING=1")
    assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"tidegate-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sd_notify.notify("READY=1")


def test_a_missing_socket_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert not sd_notify.notify("READY=1")


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}, 0.2),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], interval: float | None) -> None:
    assert sd_notify.watchdog_interval(environ) == interval


def test_watchdog_pings_only_while_healthy(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    healthy = True

    async def run() -> None:
        nonlocal healthy
        task = asyncio.create_task(sd_notify.run_watchdog(0.02, lambda: healthy))
        await asyncio.sleep(0.15)
        healthy = False
        await asyncio.sleep(0)  # a ping already past its check lands before the mark
        assert sd_notify.notify("MARK=1")
        await asyncio.sleep(0.15)  # several intervals, unhealthy
        task.cancel()

    asyncio.run(run())
    received = []
    sock.settimeout(0.2)
    with contextlib.suppress(TimeoutError):
        while True:
            received.append(sock.recv(4096))
    mark = received.index(b"MARK=1")
    assert mark >= 3
    assert set(received[:mark]) == {b"WATCHDOG=1"}
    assert received[mark + 1 :] == []
