"""Admission: the write queue, concurrent calls and in-flight bytes each turn a call away with
a retryable error before any decoding happens."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidegate._core import CoreLimits, MetricsCore, RollupSettings
from tidegate.checkpoints import Checkpoint
from tidegate.config import DEFAULT_TENANT, Config
from tidegate.errors import BackpressureError
from tidegate.intake import Intake
from tidegate.metrics_writer import MetricsWriter
from tidegate.ratelimit import TenantLimiter
from tidegate.receiver import METRICS_SERVICE, Receiver, Signal
from tidegate.spool import Spool, SpoolRecord
from tidegate.telemetry import Telemetry

MIB = 1024 * 1024


class Queue(MetricsWriter):
    """The metrics writer's admission rule, with the count of unwritten points set by the
    test."""

    unwritten = 0

    @property
    def unwritten_points(self) -> int:
        return Queue.unwritten


def make(config: Config, intake: Intake) -> tuple[Signal, Receiver]:
    core = MetricsCore(CoreLimits(), RollupSettings())
    queue = Queue(config, "", core, Telemetry(), intake, "spool", Checkpoint())
    signal = Signal(
        "metrics",
        METRICS_SERVICE,
        lambda request, now_ns, tenant: core.ingest(request, now_ns, tenant=tenant),
        lambda request, now_ns, tenant: core.check(request, now_ns, tenant=tenant),
        queue.queue_full,
        lambda summary, _tenant: queue.account(summary),
        lambda summary: int(summary.accepted_points),
        intake,
    )
    return signal, Receiver(
        config, Telemetry(), [signal], lambda _metadata: DEFAULT_TENANT, TenantLimiter()
    )


@pytest.fixture
def signal_and_receiver() -> Iterator[tuple[Signal, Receiver]]:
    config = Config()
    config.grpc.max_concurrent_rpcs = 2
    config.ingest.max_buffered_points = 1000
    config.ingest.max_in_flight_bytes = 10 * MIB
    Queue.unwritten = 0
    signal, made = make(config, Intake("metrics", None, 600))
    yield signal, made
    asyncio.run(made.close())


@pytest.mark.parametrize(
    ("unwritten", "calls", "held_bytes", "request_bytes", "message"),
    [
        (0, 0, 0, MIB, None),
        (999, 1, 5 * MIB, 5 * MIB, None),
        (1000, 0, 0, MIB, "write queue full (1000 points not yet stored, limit 1000)"),
        (0, 2, 0, MIB, "too many concurrent Export calls (limit 2)"),
        (0, 1, 6 * MIB, 5 * MIB, "too many request bytes being decoded"),
        (0, 0, 0, 16 * MIB, None),  # a lone request always passes: the size limit bounds it
    ],
)
def test_admission(
    signal_and_receiver: tuple[Signal, Receiver],
    unwritten: int,
    calls: int,
    held_bytes: int,
    request_bytes: int,
    message: str | None,
) -> None:
    signal, receiver = signal_and_receiver
    Queue.unwritten = unwritten
    receiver._in_flight_calls = calls
    receiver._in_flight_bytes = held_bytes
    if message is None:
        receiver.admit(request_bytes, signal)
        return
    with pytest.raises(BackpressureError, match=re.escape(message)) as refused:
        receiver.admit(request_bytes, signal)
    assert refused.value.retry_after_seconds == 1.0


@pytest.fixture
def spool_holding_60_kb(tmp_path: Path) -> Iterator[tuple[Config, Signal, Receiver]]:
    """A receiver whose spool (limit 100 KB) holds 60 KB of requests not yet stored."""
    config = Config()
    config.spool.max_bytes = 100_000
    # Through the page cache: the spool's bytes are the record's, with no padding.
    spool = Spool(tmp_path / "metrics", direct_io=False)
    signal, receiver = make(config, Intake("metrics", spool, 600))

    async def fill() -> None:
        await spool.append(SpoolRecord(1, 0, "", bytes(16), bytes(60_000)))

    asyncio.run(fill())
    yield config, signal, receiver
    asyncio.run(spool.close())
    asyncio.run(receiver.close())


def test_a_full_spool_refuses_with_retry_info(
    spool_holding_60_kb: tuple[Config, Signal, Receiver],
) -> None:
    _, signal, receiver = spool_holding_60_kb
    receiver.admit(30_000, signal)  # 60 KB held + 30 KB fits under 100 KB
    with pytest.raises(BackpressureError, match=r"spool full \(600\d\d bytes") as refused:
        receiver.admit(50_000, signal)
    assert refused.value.retry_after_seconds == 1.0


def test_a_full_spool_asks_for_longer_delays_until_it_has_room(
    spool_holding_60_kb: tuple[Config, Signal, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half the time the spool has been full, up to 30 s; a dip under the limit does not end
    it, falling under half does, and so does refusing nothing for 30 s."""
    config, signal, receiver = spool_holding_60_kb
    now = [1000.0]

    def delay_at(seconds: float) -> float:
        now[0] = 1000.0 + seconds
        with pytest.raises(BackpressureError, match="spool full") as refused:
            receiver.admit(50_000, signal)
        return refused.value.retry_after_seconds

    with monkeypatch.context() as patch:
        patch.setattr("tidegate.receiver.time.monotonic", lambda: now[0])
        assert delay_at(0) == 1.0
        assert delay_at(10) == 5.0
        receiver.admit(30_000, signal)  # fits, but the spool stays over half full
        assert delay_at(12) == 6.0
        assert delay_at(40) == 20.0
        assert delay_at(70) == 30.0
        assert delay_at(101) == 1.0  # nothing refused for 31 s: a new outage
        assert delay_at(105) == 2.0
        config.spool.max_bytes = 200_000
        receiver.admit(30_000, signal)  # 60 KB of 200 KB: under half, the outage is over
        config.spool.max_bytes = 100_000
        assert delay_at(106) == 1.0


def test_shutdown_refuses_every_request(
    signal_and_receiver: tuple[Signal, Receiver],
) -> None:
    signal, receiver = signal_and_receiver
    receiver.admit(MIB, signal)
    receiver.stop_intake()
    with pytest.raises(BackpressureError, match="shutting down") as refused:
        receiver.admit(MIB, signal)
    # Twice the notice the listener stays open for: clients come back once it is closed.
    assert receiver.shutdown_notice_seconds == 0.5
    assert refused.value.retry_after_seconds == 1.0
