"""Where live settings are stored, and the file source.

Every source reads all settings, reads and writes one key, and ``watch``es: a long-running
coroutine that reports what it reads through ``SourceEvents`` until it is cancelled,
reconnecting with backoff when the store goes away.
"""

from __future__ import annotations

import asyncio
import random
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tidegate.config import Config
from tidegate.errors import ConfigError, LiveSourceError
from tidegate.live.settings import flatten


@dataclass(frozen=True)
class SourceEvents:
    """What a watching source reports, each as soon as it knows it."""

    #: Every setting that is set, after a (re)connect, a periodic refresh or a reload.
    refreshed: Callable[[Mapping[str, object]], None]
    #: One key changed: its new raw value, or None when it was unset.
    changed: Callable[[str, object | None], None]
    #: The store could not be reached or read (a short reason, never a credential).
    lost: Callable[[str], None]


class LiveSource(Protocol):
    """A store of live settings: the file, PostgreSQL or Redis."""

    name: str

    async def read_all(self) -> dict[str, object]:
        """Every setting that is set, raw (text, or native TOML values for the file)."""
        ...

    async def read(self, key: str) -> object | None:
        """The raw value of one key, or None when it is not set."""
        ...

    async def set(self, key: str, value: str) -> None:
        """Store ``value`` (already validated) and tell every watcher."""
        ...

    async def unset(self, key: str) -> None:
        """Remove ``key`` and tell every watcher."""
        ...

    async def watch(self, events: SourceEvents, refresh_seconds: float) -> None:
        """Report changes until cancelled; re-read everything every ``refresh_seconds``."""
        ...


class Backoff:
    """Delays between reconnection attempts: doubling from ``first`` up to ``cap``, with
    jitter so that many daemons do not reconnect in the same instant."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self._first = first
        self._cap = cap
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._cap, self._next * 2)
        return delay * random.uniform(0.8, 1.2)


def reason(exc: BaseException) -> str:
    """A one-line reason for logs: the exception's class and first line, cut short."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


class FileSource:
    """The ``[live.settings]`` table of the config file, re-read on each ``read_all`` (the
    daemon's SIGHUP). It cannot be written: users edit the file."""

    name = "file"
    READ_ONLY = (
        "live.source is file: edit the [live.settings] table of the config file, then send "
        "SIGHUP to the daemon (systemctl reload tidegate)"
    )

    def __init__(self, path: str | Path | None) -> None:
        self._path = None if path is None else Path(path)

    async def read_all(self) -> dict[str, object]:
        if self._path is None:
            return {}
        try:
            document = tomllib.loads(await asyncio.to_thread(self._path.read_text, "utf-8"))
        except OSError as exc:
            raise LiveSourceError(f"cannot read {self._path}: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self._path} is not valid TOML: {exc}") from exc
        live = document.get("live", {})
        settings = live.get("settings", {}) if isinstance(live, dict) else {}
        if not isinstance(settings, dict):
            raise ConfigError(f"{self._path}: live.settings must be a table")
        return flatten(settings)

    async def read(self, key: str) -> object | None:
        return (await self.read_all()).get(key)

    async def set(self, key: str, value: str) -> None:
        raise ConfigError(self.READ_ONLY)

    async def unset(self, key: str) -> None:
        raise ConfigError(self.READ_ONLY)

    async def watch(self, events: SourceEvents, refresh_seconds: float) -> None:
        # Read once; after that the file changes only when the daemon reloads on SIGHUP, so
        # that a half-edited file is never picked up.
        try:
            events.refreshed(await self.read_all())
        except (ConfigError, LiveSourceError) as exc:
            events.lost(str(exc))
        await asyncio.Event().wait()


def open_source(
    config: Config, *, config_file: str | Path | None = None, dsn: str | None = None
) -> LiveSource:
    """The source ``config.live.source`` names. ``dsn`` overrides ``storage.dsn`` (the daemon
    passes the embedded server's); the postgres source needs one of them."""
    live = config.live
    if live.source == "postgres":
        from tidegate.live.postgres_source import PostgresSource

        dsn = dsn or config.storage.dsn
        if not dsn:
            raise ConfigError("live.source is postgres but no PostgreSQL DSN is known")
        return PostgresSource(dsn, connect_timeout=config.storage.connect_timeout_seconds)
    if live.source == "redis":
        from tidegate.live.redis_source import RedisSource

        return RedisSource(live.redis_url, live.redis_prefix)
    return FileSource(config_file)
