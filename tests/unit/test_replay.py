"""Replayed spool records go back to the tenant they were accepted for."""

from __future__ import annotations

import pytest

from tests import payloads
from tidegate._core import CoreLimits, MetricsCore, RollupSettings
from tidegate.replay import ingest_record, record_tenant
from tidegate.spool import SpoolRecord

HASH = bytes(16)


def record(seq: int, tenant: str) -> SpoolRecord:
    metrics = [payloads.gauge("cpu", [payloads.number_point(1.0)])]
    request = payloads.request(metrics).SerializeToString()
    return SpoolRecord(seq, payloads.now_ns(), tenant, HASH, request)


@pytest.mark.parametrize(
    ("tenant", "expected"), [("", "default"), ("default", "default"), ("acme", "acme")]
)
def test_record_tenant(tenant: str, expected: str) -> None:
    assert record_tenant(record(1, tenant)) == expected


def test_replayed_records_are_ingested_for_their_tenant_and_never_refused() -> None:
    core = MetricsCore(CoreLimits(), RollupSettings())
    core.set_series_limits({}, 0)
    summaries = [ingest_record(core, record(seq, t)) for seq, t in [(1, ""), (2, "acme")]]
    assert [(s.seq, s.accepted_points, s.rejected_points) for s in summaries] == [
        (1, 1, 0),
        (2, 1, 0),
    ]
    assert core.active_series_by_tenant() == {"default": 1, "acme": 1}
    # The same request live, for a third tenant, is refused by the limit of 0.
    live = core.ingest(record(3, "").payload, payloads.now_ns(), tenant="globex")
    assert (live.accepted_points, live.rejected_by_reason) == (0, {"series_limit": 1})


def test_a_deferred_record_meets_the_limit_its_check_answered_with() -> None:
    core = MetricsCore(CoreLimits(), RollupSettings())
    core.set_series_limits({}, 0)
    waiting = record(1, "acme")  # its bytes; the number is the one check gives
    answered = core.check(waiting.payload, waiting.now_ns, tenant="acme")
    assert answered.rejected_by_reason == {"series_limit": 1}
    deferred = SpoolRecord(answered.seq, waiting.now_ns, "acme", HASH, waiting.payload)
    caught_up = ingest_record(core, deferred, deferred=True)
    assert (caught_up.seq, caught_up.accepted_points) == (answered.seq, 0)
    assert caught_up.rejected_by_reason == {"series_limit": 1}
    assert core.active_series_by_tenant().get("acme", 0) == 0
