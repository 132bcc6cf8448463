"""A real Redis for tests: ``redis-server`` on a free loopback port in a temporary directory,
without persistence. It can be stopped and started again on the same port, to test clients
that must reconnect."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import missing_dependency
from tests.ports import free_port

STARTUP_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


class RedisServer:
    """One redis-server process; ``stop()`` and ``start()`` again keep the port."""

    def __init__(self, executable: str, directory: Path) -> None:
        self._executable = executable
        self._directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [self._executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        # No persistence, except a dump.rdb a test SAVEs on purpose: loaded at the next start.
        command += ["--save", "", "--appendonly", "no", "--dir", str(self._directory)]
        # The log goes to a file, not a pipe: a pipe nobody reads would block the server.
        with (self._directory / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_until_answering()

    def stop(self) -> None:
        """Terminate the server and wait for it; its data is gone (no persistence)."""
        if self._process is None:
            return
        process, self._process = self._process, None
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_SECONDS)

    def _wait_until_answering(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with status {self._process.returncode}: {self._log()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on {self.port}: {self._log()}")
            time.sleep(0.05)

    def _log(self) -> str:
        path = self._directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@contextlib.contextmanager
def running_redis_server() -> Iterator[RedisServer]:
    """A started RedisServer, stopped and its directory deleted on exit. Without
    redis-server the test is skipped (failed under ``TIDEGATE_REQUIRE_ALL=1``)."""
    executable = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if executable is None:
        missing_dependency("redis-server not installed")
        return  # not reached: missing_dependency skips or fails the test
    directory = Path(tempfile.mkdtemp(prefix="tidegate-redis-"))
    server = RedisServer(executable, directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
