"""The decode threads run nicer than the event loop that hands them requests, by
`ingest.decode_thread_niceness` steps, and still ingest every request."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import threading
from typing import Any

import pytest

from tests.payloads import gauge, number_point, request
from tests.unit.test_receiver_admission import make
from tests.unit.test_receiver_resends import Call
from tidegate.config import Config
from tidegate.intake import Intake
from tidegate.receiver import make_thread_nicer

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="thread priorities are Linux's"
)

PAYLOADS = [
    request(
        [gauge(f"niceness_{i}", [number_point(float(j), {"j": j}) for j in range(5)])]
    ).SerializeToString()
    for i in range(3)
]


def own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def ingest_threads_niceness(niceness: int) -> tuple[list[int], int]:
    """The niceness each request was ingested at, and the points the core accepted."""
    config = Config()
    config.ingest.decode_thread_niceness = niceness
    signal, receiver = make(config, Intake("metrics", None, 600))
    seen: list[int] = []
    accepted: list[int] = []

    def ingest(payload: bytes, now_ns: int, tenant: str) -> Any:
        seen.append(own_niceness())
        summary = signal.ingest(payload, now_ns, tenant)
        accepted.append(int(summary.accepted_points))
        return summary

    watched = dataclasses.replace(signal, ingest=ingest)

    async def send() -> None:
        for payload in PAYLOADS:
            assert isinstance(await receiver.export(watched, payload, Call()), bytes)
        await receiver.close()

    asyncio.run(send())
    return seen, sum(accepted)


def test_decode_threads_are_nicer_than_the_loop() -> None:
    loop_niceness = own_niceness()
    seen, accepted = ingest_threads_niceness(5)
    assert seen == [min(19, loop_niceness + 5)] * len(PAYLOADS)
    assert accepted == 5 * len(PAYLOADS)
    assert own_niceness() == loop_niceness  # the loop's own thread is untouched


def test_zero_keeps_decode_threads_level() -> None:
    seen, accepted = ingest_threads_niceness(0)
    assert seen == [own_niceness()] * len(PAYLOADS)
    assert accepted == 5 * len(PAYLOADS)


def test_niceness_stops_at_nineteen() -> None:
    seen: list[int] = []

    def twice() -> None:
        make_thread_nicer(15)
        make_thread_nicer(15)
        seen.append(own_niceness())

    thread = threading.Thread(target=twice)
    thread.start()
    thread.join()
    assert seen == [19]
