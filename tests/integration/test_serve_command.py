"""`tidegate serve` as users run it: a real process, signals, exit codes, the embedded default."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from tests import payloads as p
from tests.ports import free_port
from tidegate.database import start_embedded_server

CONFIGS = Path(__file__).parent.parent / "data" / "config"
TIDEGATE = [sys.executable, "-m", "tidegate.cli"]


@contextmanager
def serve(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    grpc_port, http_port = free_port(), free_port()
    command = [
        *TIDEGATE,
        "serve",
        "--grpc-listen",
        f"127.0.0.1:{grpc_port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
        *args,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        wait_ready(process, f"http://127.0.0.1:{http_port}/readyz")
        yield process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_ready(process: subprocess.Popen[str], url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"tidegate exited with {process.returncode}:\n{output}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    pytest.fail("tidegate did not become ready")


def terminate(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


async def count_points(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT coalesce(sum(point_count), 0) FROM point_chunks"))
    finally:
        await conn.close()


def send(target: str, name: str, n: int) -> None:
    payload = p.request(
        [p.gauge(name, [p.number_point(float(i), {"i": i}) for i in range(n)])]
    ).SerializeToString()
    assert p.export(target, payload).partial_success.rejected_data_points == 0


def test_sigterm_flushes_everything_accepted(database_dsn: str, tmp_path: Path) -> None:
    config = str(CONFIGS / "long_flush.toml")  # no timer flush: only shutdown writes
    with serve("--config", config, "--dsn", database_dsn, "--data-dir", str(tmp_path)) as (
        process,
        target,
        _http,
    ):
        for batch in range(10):
            send(target, f"m{batch}", 500)
        assert asyncio.run(count_points(database_dsn)) == 0
        output = terminate(process)
    assert "flushing what was accepted" in output
    assert asyncio.run(count_points(database_dsn)) == 5000


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--config", str(CONFIGS / "unknown_key.toml")], {}, "ingest.flush_intervall_seconds"),
        ([], {"TIDEGATE_INGEST_FLUSH_POINTZ": "1"}, "TIDEGATE_INGEST_FLUSH_POINTZ"),
        (["--grpc-listen", "nowhere"], {}, "grpc.listen must be host:port"),
    ],
)
def test_bad_configuration_exits_2_naming_the_key(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [*TIDEGATE, "serve", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_embedded_postgres_default_is_reused_across_runs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    tmp_path.chmod(0o755)  # the embedded server runs as its own user when tests run as root
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    for run, expected in ((1, 300), (2, 600)):
        with serve("--data-dir", str(data_dir), env=env) as (process, target, _):
            send(target, f"run{run}", 300)
            terminate(process)
        assert (data_dir / "postgres" / "PG_VERSION").exists()
        # The daemon stopped its server on exit; start it again just to count, then stop it.
        server = start_embedded_server(data_dir / "postgres")
        try:
            assert asyncio.run(count_points(server.get_uri())) == expected
        finally:
            server.cleanup()
