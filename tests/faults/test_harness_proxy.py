"""The fault proxy itself, against a real PostgreSQL: a cut after COMMIT leaves the row
committed while the client sees its connection die (simple and extended protocol); a held
COMMIT commits nothing; a refusing proxy refuses connections until it accepts again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from tests.faults.harness import TcpFaultProxy, upstream_of, via_proxy

pytestmark = pytest.mark.timeout(60)
ProxyTo = Callable[..., TcpFaultProxy]


async def _rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM t"))
    finally:
        await conn.close()


async def _write_row(dsn: str, extended_commit: bool) -> BaseException | None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO t VALUES (1)")
        if extended_commit:
            await conn.fetch("COMMIT")  # Parse/Bind/Execute/Sync
        else:
            await conn.execute("COMMIT")  # one simple Query message
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        return exc
    finally:
        conn.terminate()
    return None


async def _create_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE t (x int)")
    finally:
        await conn.close()


@pytest.mark.parametrize("extended", [False, True], ids=["simple", "extended"])
def test_cut_after_commit_commits_but_the_client_never_hears(
    database_dsn: str, proxy_to: ProxyTo, extended: bool
) -> None:
    asyncio.run(_create_table(database_dsn))
    proxy = proxy_to(upstream_of(database_dsn), postgres=True)
    fault = proxy.arm_cut_after_commit(match="INSERT INTO t")
    error = asyncio.run(_write_row(via_proxy(database_dsn, proxy.port), extended))
    assert fault.fired.is_set()
    assert error is not None, "the client heard the COMMIT's answer"
    assert asyncio.run(_rows(database_dsn)) == 1
    assert proxy.fired["commit/forward_then_cut"] == 1


def test_held_commit_commits_nothing(database_dsn: str, proxy_to: ProxyTo) -> None:
    asyncio.run(_create_table(database_dsn))
    proxy = proxy_to(upstream_of(database_dsn), postgres=True)
    fault = proxy.arm_hold_commit(match="INSERT INTO t")

    async def write_then_release() -> BaseException | None:
        writing = asyncio.ensure_future(_write_row(via_proxy(database_dsn, proxy.port), False))
        await asyncio.to_thread(fault.wait, 10)
        assert await _rows(database_dsn) == 0  # held: not committed
        await asyncio.to_thread(proxy.release_held)
        return await writing

    assert asyncio.run(write_then_release()) is not None
    assert asyncio.run(_rows(database_dsn)) == 0


def test_refusing_proxy_refuses_then_accepts(database_dsn: str, proxy_to: ProxyTo) -> None:
    asyncio.run(_create_table(database_dsn))
    proxy = proxy_to(upstream_of(database_dsn), postgres=True)
    dsn = via_proxy(database_dsn, proxy.port)
    proxy.refuse()
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(_rows(dsn))
    proxy.accept()
    assert asyncio.run(_rows(dsn)) == 0
