"""``tidegate serve --config <toml>`` as a real child process, so SIGKILL is a real crash.

The configuration is written once; every (re)start uses the same file, data directory and
ports. ``spool=False`` leaves out the keys the current daemon does not know yet (the
``[spool]`` section and ``grpc.shutdown_grace_seconds``); ``TIDEGATE_TEST_SPOOL=0`` makes that
the default for a whole run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.moto_s3 import DUMMY_ENVIRONMENT, REGION
from tests.ports import free_port

TIDEGATE = [sys.executable, "-m", "tidegate.cli"]
SPOOL_DEFAULT = os.environ.get("TIDEGATE_TEST_SPOOL", "1") != "0"
# What the current daemon waits for in-flight calls at shutdown (daemon.GRPC_GRACE_SECONDS),
# used when the configuration cannot say it (spool=False).
CURRENT_GRPC_GRACE_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 30.0
MIB = 1024 * 1024
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class S3Settings:
    endpoint_url: str
    region: str = REGION
    access_key_id: str = "testing"
    secret_access_key: str = "testing"


@dataclass
class DaemonSettings:
    """Everything the harness writes into the daemon's TOML."""

    data_dir: Path
    dsn: str
    trace_store: str = ""  # empty: file:// under data_dir
    s3: S3Settings | None = None
    spool: bool = SPOOL_DEFAULT
    spool_durability: str = "fsync"
    spool_max_bytes: int = 256 * MIB
    spool_segment_bytes: int = 4 * MIB
    shutdown_grace_seconds: float = 2.0
    shutdown_timeout_seconds: float = 15.0
    flush_interval_seconds: float = 0.2
    block_max_age_seconds: float = 0.5
    retry_after_seconds: float = 0.5
    ingest: dict[str, Any] = field(default_factory=dict)  # more [ingest] keys
    traces: dict[str, Any] = field(default_factory=dict)  # more [traces] keys
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)

    @property
    def effective_grace_seconds(self) -> float:
        return self.shutdown_grace_seconds if self.spool else CURRENT_GRPC_GRACE_SECONDS

    def trace_store_url(self) -> str:
        return self.trace_store or (self.data_dir.resolve() / "traces").as_uri()

    def toml(self) -> str:
        grpc: dict[str, Any] = {"listen": f"127.0.0.1:{self.grpc_port}"}
        if self.spool:
            grpc["shutdown_grace_seconds"] = self.shutdown_grace_seconds
        sections: dict[str, Mapping[str, Any]] = {
            "grpc": grpc,
            "http": {"listen": f"127.0.0.1:{self.http_port}"},
            "storage": {"dsn": self.dsn, "connect_timeout_seconds": 5.0},
            "ingest": {
                "flush_interval_seconds": self.flush_interval_seconds,
                "retry_after_seconds": self.retry_after_seconds,
                **self.ingest,
            },
            "traces": {
                "store": self.trace_store_url(),
                "block_max_age_seconds": self.block_max_age_seconds,
                **self.traces,
            },
        }
        if self.s3 is not None:
            sections["s3"] = {
                "endpoint_url": self.s3.endpoint_url,
                "region": self.s3.region,
                "access_key_id": self.s3.access_key_id,
                "secret_access_key": self.s3.secret_access_key,
            }
        if self.spool:
            sections["spool"] = {
                "durability": self.spool_durability,
                "max_bytes": self.spool_max_bytes,
                "segment_bytes": self.spool_segment_bytes,
            }
        lines = [
            f"data_dir = {_toml(str(self.data_dir))}",
            f"shutdown_timeout_seconds = {_toml(self.shutdown_timeout_seconds)}",
        ]
        for name, values in sections.items():
            lines.append(f"\n[{name}]")
            lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
        return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a TOML basic string


@dataclass(frozen=True)
class ExitResult:
    """How a stopped daemon ended."""

    code: int | None  # None: still running when the wait timed out
    seconds: float  # from the signal to the exit
    output_tail: str


class DaemonProcess:
    """One daemon configuration, started and stopped as often as a scenario needs."""

    def __init__(self, settings: DaemonSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = settings.data_dir.parent / f"{settings.data_dir.name}.toml"
        self.config_path.write_text(settings.toml())
        self.log_path = settings.data_dir.parent / f"{settings.data_dir.name}.log"
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.settings.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Start the process and wait until /readyz answers 200."""
        assert not self.running, "the daemon is already running"
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
        env.update(DUMMY_ENVIRONMENT)  # an s3:// store never looks for real credentials
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [*TIDEGATE, "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self._wait_ready(timeout)

    def restart(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        if self.running:
            self.terminate()
        self.start(timeout)

    def kill(self) -> None:
        """SIGKILL: the process dies where it stands."""
        process = self._require()
        process.kill()
        process.wait(10)
        self._process = None

    def terminate(self, timeout: float = 60.0) -> ExitResult:
        """SIGTERM and wait for the exit; a process still running after ``timeout`` is killed
        and reported with ``code=None``."""
        process = self._require()
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code: int | None = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            code = None
        self._process = None
        return ExitResult(code, time.monotonic() - started, self.output_tail())

    def stop(self) -> None:
        """Make sure nothing is left running (fixture teardown)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(10)
            self._process = None

    def output_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _require(self) -> subprocess.Popen[bytes]:
        assert self._process is not None, "the daemon is not running"
        return self._process

    def _wait_ready(self, timeout: float) -> None:
        process = self._require()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                raise AssertionError(
                    f"tidegate exited with {process.returncode} while starting; "
                    f"config:\n{self.settings.toml()}\noutput:\n{self.output_tail()}"
                )
            try:
                with _NO_PROXY.open(f"{self.http_url}/readyz", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"tidegate not ready in {timeout} s:\n{self.output_tail()}")
