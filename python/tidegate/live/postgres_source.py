"""Live settings in the ``tidegate_config`` table, changes pushed by LISTEN/NOTIFY.

A trigger (migration 0005) notifies the channel ``tidegate_config`` with the key on every
insert, update and delete. One dedicated connection per daemon listens and re-reads each
notified key; it carries ``application_name = tidegate-live-listen`` so that operators can
find it in ``pg_stat_activity``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from tidegate.errors import LiveSourceError
from tidegate.live.sources import Backoff, SourceEvents, reason

log = logging.getLogger(__name__)

CHANNEL = "tidegate_config"
LISTENER_APPLICATION_NAME = "tidegate-live-listen"
# What a dropped connection or an unreachable server raises.
CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
CLOSE_TIMEOUT_SECONDS = 2.0


class PostgresSource:
    """The ``tidegate_config`` table of one database."""

    name = "postgres"

    def __init__(self, dsn: str, connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout

    @contextlib.asynccontextmanager
    async def _connection(self, **settings: str) -> AsyncIterator[Any]:
        try:
            conn = await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, server_settings=settings or None
            )
        except CONNECTION_ERRORS as exc:
            raise LiveSourceError(f"cannot connect to PostgreSQL: {reason(exc)}") from exc
        try:
            yield conn
        except CONNECTION_ERRORS as exc:
            raise LiveSourceError(f"PostgreSQL: {reason(exc)}") from exc
        finally:
            try:
                await conn.close(timeout=CLOSE_TIMEOUT_SECONDS)
            except CONNECTION_ERRORS:
                conn.terminate()  # a dead socket: drop it without waiting

    async def read_all(self) -> dict[str, object]:
        async with self._connection() as conn:
            return await _read_all(conn)

    async def read(self, key: str) -> object | None:
        async with self._connection() as conn:
            return await _read(conn, key)

    async def set(self, key: str, value: str) -> None:
        async with self._connection() as conn:
            await conn.execute(
                """INSERT INTO tidegate_config (key, value) VALUES ($1, $2)
                   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
                key,
                value,
            )

    async def unset(self, key: str) -> None:
        async with self._connection() as conn:
            await conn.execute("DELETE FROM tidegate_config WHERE key = $1", key)

    async def watch(self, events: SourceEvents, refresh_seconds: float) -> None:
        backoff = Backoff()
        while True:
            try:
                async with self._connection(application_name=LISTENER_APPLICATION_NAME) as conn:
                    await self._listen(conn, events, refresh_seconds, backoff)
            except LiveSourceError as exc:
                events.lost(str(exc))
            delay = backoff.next_delay()
            log.debug("live settings: reconnecting to PostgreSQL in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _listen(
        self, conn: Any, events: SourceEvents, refresh_seconds: float, backoff: Backoff
    ) -> None:
        """Listen on one connection until it drops; everything is read on it, in order."""
        notified = NotifiedKeys()
        conn.add_termination_listener(lambda _conn: notified.close())
        await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, key: notified.add(key))
        # LISTEN before reading: a change committed in between is both read and notified.
        events.refreshed(await _read_all(conn))
        backoff.reset()
        while True:
            if not await notified.wait(refresh_seconds):
                events.refreshed(await _read_all(conn))
                continue
            if notified.closed or conn.is_closed():
                raise LiveSourceError("the PostgreSQL listener connection was closed")
            key = notified.pop()
            events.changed(key, await _read(conn, key))


class NotifiedKeys:
    """Keys notified and not yet re-read, each once however often it was notified: a burst of
    writes to one key costs one read, and memory stays bounded by the number of keys."""

    def __init__(self) -> None:
        self._keys: dict[str, None] = {}  # a set that keeps arrival order
        self._wake = asyncio.Event()
        self.closed = False

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def pop(self) -> str:
        key = next(iter(self._keys))
        del self._keys[key]
        return key

    async def wait(self, seconds: float) -> bool:
        """Whether a key (or the close) arrived within ``seconds``."""
        if not self._keys and not self.closed:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), seconds)
            except TimeoutError:
                return False
        return True


async def _read_all(conn: Any) -> dict[str, object]:
    rows = await conn.fetch("SELECT key, value FROM tidegate_config")
    return {row["key"]: row["value"] for row in rows}


async def _read(conn: Any, key: str) -> object | None:
    value: str | None = await conn.fetchval("SELECT value FROM tidegate_config WHERE key = $1", key)
    return value
