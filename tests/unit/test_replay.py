"""Replayed spool records go back to the tenant they were accepted for, and into the rollups
their checkpoint says are not written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests import payloads
from tidegate._core import CoreLimits, MetricsCore, RollupSettings
from tidegate.checkpoints import I64_MAX, Checkpoint
from tidegate.intake import Intake
from tidegate.replay import ingest_record, record_tenant, replay_metrics_rollups
from tidegate.spool import SeqSet, Spool, SpoolRecord
from tidegate.telemetry import Telemetry

HASH = bytes(16)
NS = 1_000_000_000


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


def test_rollup_replay_skips_the_windows_a_shutdown_wrote(tmp_path: Path) -> None:
    """A restart reopened a window for request 1, which the shutdown before it left in the
    spool; that shutdown wrote every window of request 2, in the window after. A commit took
    request 1's points with both windows open, and the daemon crashed. Request 1 goes back
    into its window; request 2 goes nowhere (its window and hour rows are stored)."""
    now = payloads.now_ns()
    minute = 60 * NS
    first_window = (now - 3 * minute) // minute * minute

    async def spool_both() -> None:
        spool = Spool(tmp_path)
        for seq, start in ((1, first_window), (2, first_window + minute)):
            point = payloads.number_point(1.0, time=start + NS)
            body = payloads.request([payloads.gauge(f"r{seq}", [point])]).SerializeToString()
            await spool.append(SpoolRecord(seq, now, "", HASH, body))
        await spool.close()

    asyncio.run(spool_both())
    crashed = Checkpoint(
        committed=SeqSet(2),
        open_from_seq=1,
        closed_at_ns=first_window + minute,  # both windows open
        hours_closed_at_ns=first_window + minute,
        hours_flushed_at_ns=I64_MAX,  # the shutdown's hour batch
        hour_flush=SeqSet(0, [2]),
        windows_written=SeqSet(0, [2]),
        hour_flush_windows_written=SeqSet(0, [2]),
    )
    spool = Spool(tmp_path)
    try:
        core = MetricsCore(CoreLimits(), RollupSettings())
        intake = Intake("metrics", spool, 60)
        assert replay_metrics_rollups(core, intake, crashed, Telemetry()) == 2
        assert core.open_windows == 1
        assert core.oldest_open_window_start_ns == first_window, "request 1's"
    finally:
        asyncio.run(spool.close())
