"""API keys in a real PostgreSQL: creation, listing, revocation, the `tidegate tenants`
command, and `watch`, which must make a revocation effective in under a second."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from tidegate import api_keys, schema, tenants_cli
from tidegate.api_keys import ApiKeys
from tidegate.errors import AuthenticationError, TenantNameError

# Far longer than any test: only a notification (or a reconnect) can reload the directory.
NO_REFRESH = 3600.0


@contextlib.asynccontextmanager
async def migrated(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        await schema.apply(conn)
        yield conn
    finally:
        await conn.close()


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> float:
    """Seconds until ``condition()`` held; fails after ``within`` seconds."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, "condition not reached in time"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def tenant_of(directory: ApiKeys, key: str) -> str:
    try:
        return directory.authenticate_header(f"Bearer {key}", required=True)
    except AuthenticationError as exc:
        return f"refused: {exc}"


def answers(directory: ApiKeys, key: str, expected: str) -> bool:
    return tenant_of(directory, key) == expected


def test_create_list_and_revoke(database_dsn: str) -> None:
    async def scenario() -> None:
        async with migrated(database_dsn) as conn:
            a1, key_a1 = await api_keys.create_key(conn, "acme")
            a2, _ = await api_keys.create_key(conn, "acme")
            b1, _ = await api_keys.create_key(conn, "beta")
            stored = await conn.fetchrow(
                "SELECT t::text AS row, key_sha256 FROM tidegate_api_keys t WHERE key_id = $1", a1
            )
            assert bytes(stored["key_sha256"]) == hashlib.sha256(key_a1.encode()).digest()
            assert key_a1.rsplit("_", 1)[1] not in stored["row"]  # the secret is not stored

            rows = await api_keys.list_keys(conn)
            assert [(r.tenant, r.revoked_at) for r in rows] == [
                ("acme", None),
                ("acme", None),
                ("beta", None),
            ]
            assert {r.key_id for r in rows} == {a1, a2, b1}
            assert not hasattr(rows[0], "key_sha256")

            assert await api_keys.revoke(conn, key_id=a1) == 1
            assert await api_keys.revoke(conn, key_id=a1) == 0  # already revoked
            assert await api_keys.revoke(conn, tenant="acme") == 1  # only a2 was still active
            assert await api_keys.revoke(conn, tenant="nobody") == 0
            revoked = {r.key_id for r in await api_keys.list_keys(conn) if r.revoked_at}
            assert revoked == {a1, a2}

            directory = ApiKeys()
            await directory.load(conn)
            assert len(directory) == 3
            assert tenant_of(directory, key_a1) == f"refused: API key {a1} was revoked"

            with pytest.raises(ValueError, match="not both and not neither"):
                await api_keys.revoke(conn)
            with pytest.raises(ValueError, match="not both and not neither"):
                await api_keys.revoke(conn, key_id=a1, tenant="acme")
            with pytest.raises(TenantNameError):
                await api_keys.create_key(conn, "Not Valid")

    asyncio.run(scenario())


def test_watch_makes_a_revocation_effective_in_under_a_second(database_dsn: str) -> None:
    async def scenario() -> list[float]:
        async with migrated(database_dsn) as conn:
            directory = ApiKeys()
            task = asyncio.create_task(
                api_keys.watch(directory, database_dsn, refresh_seconds=NO_REFRESH)
            )
            try:
                await eventually(lambda: directory.loaded_at is not None)
                delays: list[float] = []
                for tenant in ("acme", "beta", "gamma"):
                    key_id, key = await api_keys.create_key(conn, tenant)
                    await eventually(functools.partial(answers, directory, key, tenant))
                    started = time.monotonic()
                    await api_keys.revoke(conn, key_id=key_id)
                    revoked = f"refused: API key {key_id} was revoked"
                    await eventually(functools.partial(answers, directory, key, revoked))
                    delays.append(time.monotonic() - started)
                return delays
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    delays = asyncio.run(scenario())
    print(f"revocation seen after {', '.join(f'{d * 1000:.1f} ms' for d in delays)}")
    assert max(delays) < 1.0


async def _terminate_other_backends(conn: asyncpg.Connection) -> int:
    terminated: int = await conn.fetchval(
        """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()"""
    )
    return terminated


def test_watch_reconnects_and_picks_up_a_change_made_meanwhile(
    database_dsn: str, postgres_server: Callable[[str], str]
) -> None:
    async def allow_connections(database: str, allow: bool) -> None:
        # From another database: PostgreSQL refuses this for the connection's own.
        admin = await asyncpg.connect(postgres_server("postgres"))
        try:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {allow}')
        finally:
            await admin.close()

    async def scenario() -> None:
        async with migrated(database_dsn) as conn:
            database = await conn.fetchval("SELECT current_database()")
            directory = ApiKeys()
            task = asyncio.create_task(
                api_keys.watch(directory, database_dsn, refresh_seconds=NO_REFRESH)
            )
            try:
                await eventually(lambda: directory.loaded_at is not None)
                first_load = directory.loaded_at
                # Keep the listener out for a while: it must retry, then catch up.
                await allow_connections(database, False)
                assert await _terminate_other_backends(conn) == 1  # the listener
                key_id, key = await api_keys.create_key(conn, "acme")  # notifies no one
                await asyncio.sleep(0.5)
                assert tenant_of(directory, key) == "refused: invalid API key"
                await allow_connections(database, True)
                waited = await eventually(lambda: tenant_of(directory, key) == "acme")
                assert waited < 2.0  # the backoff has not grown past a second yet
                assert directory.loaded_at != first_load
                # The new connection listens again.
                started = time.monotonic()
                await api_keys.revoke(conn, key_id=key_id)
                await eventually(lambda: tenant_of(directory, key).startswith("refused"))
                assert time.monotonic() - started < 1.0
                assert not task.done()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(scenario())


def test_watch_reloads_periodically_when_a_notification_is_missed(database_dsn: str) -> None:
    async def scenario() -> None:
        async with migrated(database_dsn) as conn:
            directory = ApiKeys()
            task = asyncio.create_task(api_keys.watch(directory, database_dsn, refresh_seconds=0.3))
            try:
                await eventually(lambda: directory.loaded_at is not None)
                await conn.execute("ALTER TABLE tidegate_api_keys DISABLE TRIGGER USER")
                _, key = await api_keys.create_key(conn, "acme")
                waited = await eventually(lambda: tenant_of(directory, key) == "acme")
                assert waited < 1.0
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(scenario())


def test_watch_keeps_retrying_while_postgres_is_unreachable() -> None:
    async def scenario() -> None:
        directory = ApiKeys()
        task = asyncio.create_task(
            api_keys.watch(directory, "postgresql://127.0.0.1:1/none", connect_timeout_seconds=1)
        )
        await asyncio.sleep(0.5)
        assert not task.done()
        assert directory.loaded_at is None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def tenants(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tidegate")
    tenants_cli.add_parser(parser.add_subparsers(dest="command"))
    return tenants_cli.run(parser.parse_args(["tenants", *argv]))


def test_tenants_command(database_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    # A fresh database: the command applies the schema itself.
    assert tenants("add", "acme", "--dsn", database_dsn) == 0
    out = capsys.readouterr().out
    key = re.search(r"^(tg_[0-9a-f]{12}_\S{43})$", out, re.MULTILINE)
    assert key is not None
    key_id = key[1][3:15]
    assert f"created API key {key_id} for tenant acme" in out
    assert "cannot be shown again" in out
    assert tenants("add", "beta", "--dsn", database_dsn) == 0
    capsys.readouterr()

    async def authenticate() -> str:
        async with migrated(database_dsn) as conn:
            directory = ApiKeys()
            await directory.load(conn)
            return tenant_of(directory, key[1])

    assert asyncio.run(authenticate()) == "acme"

    assert tenants("list", "--dsn", database_dsn) == 0
    listing = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"TENANT\s+KEY ID\s+CREATED\s+REVOKED", listing[0])
    assert re.fullmatch(rf"acme\s+{key_id}\s+\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+-", listing[1])
    assert listing[2].startswith("beta ")
    assert key[1] not in "\n".join(listing)

    assert tenants("revoke", key_id, "--dsn", database_dsn) == 0
    assert capsys.readouterr().out == f"revoked 1 key of API key {key_id}\n"
    assert asyncio.run(authenticate()) == f"refused: API key {key_id} was revoked"
    assert tenants("revoke", key_id, "--dsn", database_dsn) == 1
    assert "no active API key" in capsys.readouterr().err
    assert tenants("revoke", "--tenant", "beta", "--dsn", database_dsn) == 0
    assert capsys.readouterr().out == "revoked 1 key of tenant beta\n"
    assert tenants("list", "--dsn", database_dsn) == 0
    assert "-\n" not in capsys.readouterr().out  # every key now has a revocation time


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "Bad Name", "--dsn", "postgresql://x/y"], "invalid tenant name 'Bad Name'"),
        (["revoke", "--dsn", "postgresql://x/y"], "takes a KEY_ID or --tenant NAME"),
        (["revoke", "0123456789ab", "--tenant", "a", "--dsn", "x"], "a KEY_ID or --tenant"),
        (["revoke", "xyz", "--dsn", "postgresql://x/y"], "invalid key id 'xyz'"),
        ([], "tenants needs a command"),
        (["list", "--dsn", "not a dsn"], "invalid storage.dsn / --dsn"),
    ],
)
def test_tenants_command_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tenants(*argv) == 2
    assert message in capsys.readouterr().err


def test_tenants_command_on_the_embedded_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No DSN: the embedded PostgreSQL of the data directory, as `make run` uses it.
    assert tenants("add", "acme", "--data-dir", str(tmp_path)) == 0
    key = capsys.readouterr().out.splitlines()[1]
    assert tenants("list", "--data-dir", str(tmp_path)) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listed[1:]] == [["acme", key.split("_")[1]]]


def test_tenants_command_unreachable_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert tenants("list", "--dsn", "postgresql://127.0.0.1:1/none") == 1
    assert "cannot connect to PostgreSQL" in capsys.readouterr().err
