"""Admission: the write queue, concurrent calls and in-flight bytes each turn a call away with
a retryable error before any decoding happens."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from tidegate._core import CoreLimits, MetricsCore, RollupSettings
from tidegate.config import Config
from tidegate.errors import BackpressureError
from tidegate.receiver import MetricsReceiver
from tidegate.telemetry import Telemetry

MIB = 1024 * 1024


class Queue:
    """Stands in for the writer's count of unwritten points."""

    unwritten = 0


@pytest.fixture
def receiver() -> Iterator[MetricsReceiver]:
    config = Config()
    config.grpc.max_concurrent_rpcs = 2
    config.ingest.max_buffered_points = 1000
    config.ingest.max_in_flight_bytes = 10 * MIB
    Queue.unwritten = 0
    made = MetricsReceiver(
        config,
        MetricsCore(CoreLimits(), RollupSettings()),
        Telemetry(),
        lambda: Queue.unwritten,
        lambda: None,
    )
    yield made
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
    receiver: MetricsReceiver,
    unwritten: int,
    calls: int,
    held_bytes: int,
    request_bytes: int,
    message: str | None,
) -> None:
    Queue.unwritten = unwritten
    receiver._in_flight_calls = calls
    receiver._in_flight_bytes = held_bytes
    if message is None:
        receiver.admit(request_bytes)
        return
    with pytest.raises(BackpressureError, match=re.escape(message)) as refused:
        receiver.admit(request_bytes)
    assert refused.value.retry_after_seconds == 1.0
