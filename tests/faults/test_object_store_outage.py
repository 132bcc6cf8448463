"""The S3 trace store (moto) unreachable for a while: the proxy in front of it stops listening
and drops its connections. Spans keep being acknowledged meanwhile, and all arrive, once,
after the store comes back."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.faults.conftest import BUCKET, MakeScenario
from tests.faults.harness import METRICS, TRACES, S3Settings, TcpFaultProxy, Upstream

pytestmark = pytest.mark.timeout(90)
OUTAGE_SECONDS = 5.0


def test_spans_acknowledged_while_the_store_is_unreachable_all_arrive(
    make_scenario: MakeScenario,
    database_dsn: str,
    moto_s3: S3Settings,
    proxy_to: Callable[..., TcpFaultProxy],
) -> None:
    moto = urlsplit(moto_s3.endpoint_url)
    proxy = proxy_to(Upstream(host=moto.hostname or "127.0.0.1", port=moto.port or 80))
    scenario = make_scenario(
        database_dsn,
        trace_store=f"s3://{BUCKET}/traces",
        s3=S3Settings(endpoint_url=f"http://{proxy.address}"),
        s3_checker=moto_s3,
    )
    scenario.daemon.start()
    scenario.generator.start()
    scenario.generator.wait_acknowledged(METRICS, 1000)
    scenario.generator.wait_acknowledged(TRACES, 200)

    proxy.refuse()
    acknowledged_before = scenario.ledger.acknowledged_items(TRACES)
    _, indexed_at_outage = scenario.checker.totals()
    scenario.run_load(OUTAGE_SECONDS)
    acknowledged_during = scenario.ledger.acknowledged_items(TRACES) - acknowledged_before
    _, indexed_during = scenario.checker.totals()
    proxy.accept()

    scenario.run_load(2.0)
    report = scenario.finish()
    print(
        f"spans acknowledged during the outage: {acknowledged_during}; indexed during it: "
        f"{indexed_during - indexed_at_outage}"
    )
    assert acknowledged_during > 0, "spans were refused while the store was unreachable"
    report.assert_exactly_once()
