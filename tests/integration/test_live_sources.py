"""Live settings from each real source: a change reaches a subscriber in well under a second;
an invalid value is refused, counted and the previous one kept; unset falls back; the source
going away and coming back, and a missed notification, are caught up."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio
from prometheus_client import CollectorRegistry

from tests.redis_server import RedisServer, running_redis_server
from tidegate import schema
from tidegate.config import Config
from tidegate.errors import ConfigError
from tidegate.live import LiveSettings, LiveSnapshot
from tidegate.live.postgres_source import LISTENER_APPLICATION_NAME

# The brief's bound on the delay from a write to the subscriber, with room below it.
MAX_PROPAGATION_SECONDS = 1.0
PREFIX = "tidegate:config:"


class Recorder:
    """A subscriber that keeps every snapshot with the monotonic time it arrived."""

    def __init__(self, settings: LiveSettings) -> None:
        self.latest = settings.snapshot
        self.arrived = time.monotonic()
        self._event = asyncio.Event()
        settings.subscribe(self)

    def __call__(self, snapshot: LiveSnapshot) -> None:
        self.latest, self.arrived = snapshot, time.monotonic()
        self._event.set()

    async def until(self, holds: Callable[[LiveSnapshot], bool], within: float = 10.0) -> float:
        """Wait until the latest snapshot satisfies ``holds``; the monotonic time it arrived."""
        deadline = time.monotonic() + within
        while not holds(self.latest):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not reached within {within} s: {dict(self.latest.values)}"
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), remaining)
        return self.arrived


def value_of(key: str) -> Callable[[LiveSnapshot], Any]:
    return lambda snapshot: snapshot.values.get(key)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def wait_for_gauge(registry: CollectorRegistry, name: str, value: float) -> None:
    deadline = time.monotonic() + 15
    while sample(registry, name) != value:
        assert time.monotonic() < deadline, f"{name} never became {value}"
        await asyncio.sleep(0.02)


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture
def live_dsn(database_dsn: str) -> str:
    async def migrate() -> None:
        conn = await asyncpg.connect(database_dsn)
        try:
            await schema.apply(conn)
        finally:
            await conn.close()

    asyncio.run(migrate())
    return database_dsn


def postgres_config(dsn: str, refresh_seconds: float = 60.0) -> Config:
    config = Config()
    config.storage.dsn = dsn
    config.live.source = "postgres"
    config.live.refresh_seconds = refresh_seconds
    config.validate()
    return config


async def upsert(conn: Any, key: str, value: str) -> None:
    await conn.execute(
        "INSERT INTO tidegate_config (key, value) VALUES ($1, $2) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        key,
        value,
    )


def test_postgres_change_invalid_value_and_unset(live_dsn: str) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(live_dsn)
        await upsert(conn, "limits.acme.points_per_second", "5000")
        registry = CollectorRegistry()
        settings = LiveSettings(postgres_config(live_dsn), registry)
        await settings.start()
        try:
            assert settings.snapshot.limit("acme", "points") == (5000.0, 5000.0)
            assert sample(registry, "tidegate_live_config_source_up") == 1
            seen = Recorder(settings)

            start = time.monotonic()
            await upsert(conn, "limits.acme.points_per_second", "7500")
            arrived = await seen.until(lambda s: s.limit("acme", "points") == (7500.0, 7500.0))
            assert arrived - start < MAX_PROPAGATION_SECONDS

            changes = sample(registry, "tidegate_live_config_last_change_timestamp_seconds")
            assert abs(changes - time.time()) < 5
            await upsert(conn, "limits.acme.points_per_second", "-1")
            await upsert(conn, "log_level", "debug")  # after the bad one: both were handled
            await seen.until(lambda s: s.log_level == "debug")
            assert seen.latest.limit("acme", "points") == (7500.0, 7500.0)
            label = {"key": "limits.*.points_per_second"}
            assert sample(registry, "tidegate_live_config_rejected_total", **label) == 1

            await conn.execute("DELETE FROM tidegate_config WHERE key = 'log_level'")
            await seen.until(lambda s: "log_level" not in s.values)
            assert seen.latest.log_level == "info"  # the static default

            # A full reload sees the same bad value: kept, not counted again.
            assert await settings.reload()
            assert settings.snapshot.limit("acme", "points") == (7500.0, 7500.0)
            assert sample(registry, "tidegate_live_config_rejected_total", **label) == 1
        finally:
            await settings.stop()
            await conn.close()

    asyncio.run(scenario())


def test_postgres_listener_terminated_then_caught_up(live_dsn: str) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(live_dsn)
        registry = CollectorRegistry()
        settings = LiveSettings(postgres_config(live_dsn), registry)
        await settings.start()
        try:
            seen = Recorder(settings)
            # One transaction: the listener is killed, and the change (without a
            # notification) commits while it is gone; only the re-read after reconnecting
            # can find it.
            async with conn.transaction():
                await conn.execute(
                    "ALTER TABLE tidegate_config DISABLE TRIGGER tidegate_config_notify"
                )
                await upsert(conn, "sampling.checkout.api.ratio", "0.25")
                terminated = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1 AND datname = current_database()",
                    LISTENER_APPLICATION_NAME,
                )
                assert terminated == 1
                await wait_for_gauge(registry, "tidegate_live_config_source_up", 0)
                await conn.execute(
                    "ALTER TABLE tidegate_config ENABLE TRIGGER tidegate_config_notify"
                )
            await seen.until(lambda s: s.sampling() == ({"checkout.api": 0.25}, 1.0))
            await wait_for_gauge(registry, "tidegate_live_config_source_up", 1)
            assert sample(registry, "tidegate_live_config_reloads_total", outcome="failed") >= 1

            # Notifications flow again on the new connection.
            start = time.monotonic()
            await upsert(conn, "sampling.*.ratio", "0.5")
            arrived = await seen.until(lambda s: s.sampling()[1] == 0.5)
            assert arrived - start < MAX_PROPAGATION_SECONDS
        finally:
            await settings.stop()
            await conn.close()

    asyncio.run(scenario())


def test_postgres_periodic_refresh_finds_a_missed_notification(live_dsn: str) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(live_dsn)
        settings = LiveSettings(postgres_config(live_dsn, refresh_seconds=0.5), CollectorRegistry())
        await settings.start()
        try:
            seen = Recorder(settings)
            async with conn.transaction():
                await conn.execute(
                    "ALTER TABLE tidegate_config DISABLE TRIGGER tidegate_config_notify"
                )
                await upsert(conn, "retention.traces_days", "3")
                await conn.execute(
                    "ALTER TABLE tidegate_config ENABLE TRIGGER tidegate_config_notify"
                )
            start = time.monotonic()
            arrived = await seen.until(lambda s: s.traces_days == 3)
            assert arrived - start < 0.5 + MAX_PROPAGATION_SECONDS
        finally:
            await settings.stop()
            await conn.close()

    asyncio.run(scenario())


# -- Redis --------------------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis_server() as server:
        yield server


def redis_config(server: RedisServer, refresh_seconds: float = 60.0) -> Config:
    config = Config()
    config.live.source = "redis"
    config.live.redis_url = server.url
    config.live.refresh_seconds = refresh_seconds
    config.validate()
    return config


async def publish_set(client: redis.asyncio.Redis, key: str, value: str) -> None:
    await client.set(PREFIX + key, value)
    await client.publish(PREFIX + "changes", key)


def test_redis_change_invalid_value_and_unset(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
        await client.set(PREFIX + "cardinality.*.max_active_series", "100")
        registry = CollectorRegistry()
        settings = LiveSettings(redis_config(redis_server), registry)
        await settings.start()
        try:
            assert settings.snapshot.series_limits() == ({}, 100)
            seen = Recorder(settings)

            start = time.monotonic()
            await publish_set(client, "cardinality.acme.max_active_series", "2000")
            arrived = await seen.until(lambda s: s.series_limits() == ({"acme": 2000}, 100))
            assert arrived - start < MAX_PROPAGATION_SECONDS

            await publish_set(client, "cardinality.acme.max_active_series", "lots")
            await publish_set(client, "no.such.key", "1")
            await publish_set(client, "rollups.window_seconds", "30")
            await seen.until(lambda s: s.window_seconds == 30)
            assert seen.latest.series_limits() == ({"acme": 2000}, 100)
            assert "no.such.key" not in seen.latest.values
            assert sample(
                registry, "tidegate_live_config_rejected_total",
                key="cardinality.*.max_active_series",
            ) == 1  # fmt: skip
            assert sample(registry, "tidegate_live_config_rejected_total", key="unknown") == 1

            await settings.source.unset("cardinality.acme.max_active_series")
            await seen.until(lambda s: s.series_limits() == ({}, 100))
        finally:
            await settings.stop()
            await client.aclose()

    asyncio.run(scenario())


def test_redis_restart_is_caught_up(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
        registry = CollectorRegistry()
        settings = LiveSettings(redis_config(redis_server), registry)
        await settings.start()
        seen = Recorder(settings)
        try:
            await publish_set(client, "limits.*.requests_per_second", "10")
            await publish_set(client, "log_level", "warning")
            await seen.until(lambda s: s.limit("x", "requests") == (10.0, 10.0))
            # The server comes back with other data than the daemon last saw (as after a
            # restart from an older dump, or a failover): one value changed without a
            # message, and `log_level` gone.
            await client.set(PREFIX + "limits.*.requests_per_second", "20")
            await client.delete(PREFIX + "log_level")
            await client.save()
            await client.aclose()
            await asyncio.to_thread(redis_server.stop)
            await wait_for_gauge(registry, "tidegate_live_config_source_up", 0)
            assert settings.snapshot.limit("x", "requests") == (10.0, 10.0)  # kept while down
            await asyncio.to_thread(redis_server.start)
            await seen.until(lambda s: s.limit("x", "requests") == (20.0, 20.0))
            assert "log_level" not in seen.latest.values
            assert sample(registry, "tidegate_live_config_source_up") == 1

            # Messages flow again on the new subscription.
            client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
            start = time.monotonic()
            await publish_set(client, "limits.*.requests_burst", "40")
            arrived = await seen.until(lambda s: s.limit("x", "requests") == (20.0, 40.0))
            assert arrived - start < MAX_PROPAGATION_SECONDS
        finally:
            await settings.stop()
            await client.aclose()

    asyncio.run(scenario())


def test_redis_periodic_refresh_finds_a_missed_message(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
        settings = LiveSettings(
            redis_config(redis_server, refresh_seconds=0.5), CollectorRegistry()
        )
        await settings.start()
        try:
            seen = Recorder(settings)
            start = time.monotonic()
            await client.set(PREFIX + "retention.metrics_days", "9")  # no message published
            arrived = await seen.until(lambda s: s.metrics_days == 9)
            assert arrived - start < 0.5 + MAX_PROPAGATION_SECONDS
        finally:
            await settings.stop()
            await client.aclose()

    asyncio.run(scenario())


def test_unreachable_redis_keeps_static_values_and_retries() -> None:
    async def scenario() -> None:
        config = Config()
        config.live.source = "redis"
        config.live.redis_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
        registry = CollectorRegistry()
        settings = LiveSettings(config, registry)
        await settings.start()
        try:
            assert not settings.source_up
            assert settings.snapshot.window_seconds == config.rollups.window_seconds
            await asyncio.sleep(0.5)
            assert sample(registry, "tidegate_live_config_reloads_total", outcome="failed") >= 2
        finally:
            await settings.stop()

    asyncio.run(scenario())


# -- File ---------------------------------------------------------------------------------

FILE_SETTINGS = """
[live]
source = "file"

[live.settings]
log_level = "debug"
"sampling.checkout.api.ratio" = 0.5

[live.settings.limits.acme]
points_per_second = {rate}
"""


def test_file_source_reloads_on_request_and_cannot_be_written(tmp_path: Path) -> None:
    path = tmp_path / "tidegate.toml"
    path.write_text(FILE_SETTINGS.format(rate=5000))

    async def scenario() -> None:
        registry = CollectorRegistry()
        settings = LiveSettings(Config(), registry, config_file=path)
        await settings.start()
        try:
            assert settings.snapshot.values == {
                "log_level": "debug",
                "sampling.checkout.api.ratio": 0.5,
                "limits.acme.points_per_second": 5000.0,
            }
            seen = Recorder(settings)
            path.write_text(FILE_SETTINGS.format(rate=6000))
            assert settings.snapshot.limit("acme", "points") == (5000.0, 5000.0)  # no SIGHUP yet
            start = time.monotonic()
            assert await settings.reload()
            assert seen.arrived - start < MAX_PROPAGATION_SECONDS
            assert seen.latest.limit("acme", "points") == (6000.0, 6000.0)

            path.write_text(FILE_SETTINGS.format(rate='"0"'))
            assert await settings.reload()
            assert settings.snapshot.limit("acme", "points") == (6000.0, 6000.0)
            assert sample(
                registry, "tidegate_live_config_rejected_total",
                key="limits.*.points_per_second",
            ) == 1  # fmt: skip

            path.write_text("[live.settings\n")
            assert not await settings.reload()
            assert settings.snapshot.limit("acme", "points") == (6000.0, 6000.0)
            assert sample(registry, "tidegate_live_config_reloads_total", outcome="failed") == 1
            assert sample(registry, "tidegate_live_config_source_up") == 0

            with pytest.raises(ConfigError, match=r"edit the \[live.settings\] table .* SIGHUP"):
                await settings.source.set("log_level", "info")
        finally:
            await settings.stop()

    asyncio.run(scenario())
