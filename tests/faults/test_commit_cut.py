"""The connection drops between a COMMIT and its answer: PostgreSQL committed, the daemon never
heard. A writer that retries the batch stores it twice; the spool's committed position, written
in the same transaction, tells the retry that it is already stored."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.conftest import MakeScenario
from tests.faults.harness import METRICS, TRACES, TcpFaultProxy, upstream_of, via_proxy

pytestmark = pytest.mark.timeout(90)
FIRE_TIMEOUT_SECONDS = 15.0


def test_commit_whose_answer_is_lost_is_stored_once(
    make_scenario: MakeScenario,
    database_dsn: str,
    proxy_to: Callable[..., TcpFaultProxy],
) -> None:
    proxy = proxy_to(upstream_of(database_dsn), postgres=True)
    scenario = make_scenario(via_proxy(database_dsn, proxy.port), checker_dsn=database_dsn)
    scenario.daemon.start()
    scenario.generator.start()
    scenario.generator.wait_acknowledged(METRICS, 2000)
    scenario.generator.wait_acknowledged(TRACES, 200)

    # The points' COPY transaction, then a trace block's index transaction.
    for table in ("point_chunks", "trace_index"):
        fault = proxy.arm_cut_after_commit(match=table)
        fault.wait(FIRE_TIMEOUT_SECONDS)
        print(f"\ncut after the COMMIT of: {fault.summary()}")
        scenario.run_load(1.5)
    report = scenario.finish()
    assert proxy.fired["commit/forward_then_cut"] == 2
    report.assert_exactly_once()
