"""A real S3 endpoint for tests: moto's server mode in a subprocess on a free loopback port.

The server speaks the S3 HTTP API, so the code under test runs its real client, signing,
retries and HTTP stack against it; nothing is patched in-process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import IO

from tests.conftest import missing_dependency
from tests.ports import free_port

REGION = "us-east-1"

#: Credentials moto accepts; set in the environment so clients use the default chain.
DUMMY_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    # Never ask the instance metadata service (a non-loopback address) for credentials.
    "AWS_EC2_METADATA_DISABLED": "true",
    # A proxy from the environment must not intercept loopback traffic.
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
#: Variables that could point a client at a real account or another configuration.
_CLEARED_ENVIRONMENT = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION")

STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


def moto_server_available() -> bool:
    """Whether ``moto[server]`` (moto plus its Flask server extras) is installed."""
    return all(
        importlib.util.find_spec(name) is not None for name in ("moto", "flask", "flask_cors")
    )


@contextlib.contextmanager
def dummy_aws_environment() -> Iterator[None]:
    """Dummy AWS credentials and region in ``os.environ``; the previous values come back on exit."""
    names = (*DUMMY_ENVIRONMENT, *_CLEARED_ENVIRONMENT)
    saved = {name: os.environ.get(name) for name in names}
    for name in _CLEARED_ENVIRONMENT:
        os.environ.pop(name, None)
    os.environ.update(DUMMY_ENVIRONMENT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def running_moto_server() -> Iterator[str]:
    """Run ``python -m moto.server`` on a free loopback port; yields its endpoint URL.

    While the server runs, the environment holds dummy credentials and the region, so any
    client using the default credential chain can talk to it. The server is terminated and
    waited for on exit. Without moto installed the test is skipped (failed under
    ``TIDEGATE_REQUIRE_ALL=1``).
    """
    if not moto_server_available():
        missing_dependency("moto server not installed")
        return  # not reached: missing_dependency skips or fails the test
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with (
        tempfile.TemporaryFile(prefix="moto-server-", suffix=".log") as log,
        dummy_aws_environment(),
    ):
        # The log goes to a file, not a pipe: a pipe nobody reads would block the server.
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_answering(process, endpoint, log)
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_SECONDS)


def _wait_until_answering(process: subprocess.Popen[bytes], endpoint: str, log: IO[bytes]) -> None:
    # No proxy from the environment: the server is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"moto server exited with status {process.returncode} before answering: "
                f"{_read_log(log)}"
            )
        try:
            with opener.open(f"{endpoint}/moto-api/", timeout=2) as reply:
                if reply.status == 200:
                    return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"moto server on {endpoint} did not answer within {STARTUP_TIMEOUT_SECONDS} s: "
                f"{_read_log(log)}"
            )
        time.sleep(0.1)


def _read_log(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]
