"""A crash between a trace block's upload and its index commit: the proxy holds the COMMIT of
the block's ``trace_index`` rows (the block is already in the store), the daemon is killed,
and the next daemon must index every acknowledged span exactly once and leave no block that
nothing points to."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.conftest import MakeScenario
from tests.faults.harness import METRICS, TRACES, TcpFaultProxy, upstream_of, via_proxy

pytestmark = pytest.mark.timeout(90)
FIRE_TIMEOUT_SECONDS = 15.0


def test_crash_between_block_upload_and_index_commit(
    make_scenario: MakeScenario,
    database_dsn: str,
    proxy_to: Callable[..., TcpFaultProxy],
) -> None:
    proxy = proxy_to(upstream_of(database_dsn), postgres=True)
    scenario = make_scenario(via_proxy(database_dsn, proxy.port), checker_dsn=database_dsn)
    scenario.daemon.start()
    scenario.generator.start()
    scenario.generator.wait_acknowledged(METRICS, 1000)
    scenario.generator.wait_acknowledged(TRACES, 200)

    held = proxy.arm_hold_commit(match="trace_index")
    held.wait(FIRE_TIMEOUT_SECONDS)
    scenario.run_load(0.5)  # spans keep arriving while the index commit hangs
    scenario.daemon.kill()
    proxy.release_held()  # the held transaction's connection closes: PostgreSQL rolls it back
    scenario.daemon.start()
    scenario.run_load(1.5)
    report = scenario.finish()
    assert proxy.fired["commit/hold"] == 1
    report.assert_exactly_once()
