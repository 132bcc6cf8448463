"""PostgreSQL restarted under load (``pg_ctl stop -m immediate`` and ``-m fast``): once in the
middle of a COPY (the proxy holds its CopyDone, so the stop lands while the server is inside
the COPY), once at a moment of the load's choosing. Everything acknowledged arrives once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import MakeScenario
from tests.faults.harness import METRICS, TRACES, OwnPostgres, TcpFaultProxy, via_proxy

pytestmark = pytest.mark.timeout(90)
FIRE_TIMEOUT_SECONDS = 15.0
OUTAGE_SECONDS = 1.5


@pytest.mark.parametrize("mode", ["immediate", "fast"])
def test_postgres_restart_in_the_middle_of_copies(
    mode: str,
    make_scenario: MakeScenario,
    own_postgres: OwnPostgres,
    proxy_to: Callable[..., TcpFaultProxy],
) -> None:
    proxy = proxy_to(own_postgres.upstream(), postgres=True)
    scenario = make_scenario(
        via_proxy(own_postgres.dsn(), proxy.port), checker_dsn=own_postgres.dsn()
    )
    scenario.daemon.start()
    scenario.generator.start()
    scenario.generator.wait_acknowledged(METRICS, 1000)
    scenario.generator.wait_acknowledged(TRACES, 200)

    held = proxy.arm_hold_copy(match="point_chunks")
    held.wait(FIRE_TIMEOUT_SECONDS)
    restart(own_postgres, proxy, mode)  # stops while the server is inside the held COPY

    scenario.run_load(1.5)
    restart(own_postgres, proxy, mode)  # wherever the writers happen to be

    scenario.run_load(1.5)
    report = scenario.finish()
    assert proxy.fired["copy_done/hold"] == 1
    report.assert_exactly_once()


def restart(server: OwnPostgres, proxy: TcpFaultProxy, mode: str) -> None:
    server.stop(mode)
    proxy.release_held()
    proxy.cut_all()  # what a real server's exit does to its connections
    print(f"\nPostgreSQL stopped with -m {mode}")
    time.sleep(OUTAGE_SECONDS)
    server.start()
    proxy.set_upstream(server.upstream())
