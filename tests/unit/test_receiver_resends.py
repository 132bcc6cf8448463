"""Resends of the same bytes while the first attempt is being accepted: they get its answer,
and when it fails, exactly one of them is accepted in its place."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc
import pytest

from tests.payloads import gauge, number_point, request
from tests.unit.test_receiver_admission import make
from tidegate.config import Config
from tidegate.errors import BackpressureError
from tidegate.intake import Intake


class RefusedError(Exception):
    """What `abort_with_status` raises here (grpc raises its own AbortError)."""

    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self.code = code


class Call:
    """The parts of a call's context the receiver reads: no metadata, and an abort."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    async def abort_with_status(self, status: Any) -> None:
        raise RefusedError(status.code)


@pytest.mark.parametrize("resends", [1, 2, 5])
def test_resends_waiting_on_a_failed_attempt_are_stored_once(resends: int) -> None:
    signal, receiver = make(Config(), Intake("metrics", None, 600))
    attempts: list[int] = []

    def ingest_refusing_the_first(payload: bytes, now_ns: int, tenant: str) -> Any:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise BackpressureError("the first attempt is refused", 1.0)
        summary = signal.ingest(payload, now_ns, tenant)
        stored.append(int(summary.accepted_points))
        return summary

    stored: list[int] = []
    flaky = dataclasses.replace(signal, ingest=ingest_refusing_the_first)
    points = [number_point(float(i), {"i": i}) for i in range(10)]
    payload = request([gauge("resent", points)]).SerializeToString()

    async def send_all() -> list[bytes | BaseException]:
        calls = [receiver.export(flaky, payload, Call()) for _ in range(1 + resends)]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        await receiver.close()
        return answers

    answers = asyncio.run(send_all())
    first, *others = answers
    assert isinstance(first, RefusedError)
    assert first.code is grpc.StatusCode.UNAVAILABLE
    assert all(isinstance(answer, bytes) for answer in others), others
    assert len(set(others)) == 1  # every resend got the one acceptance's response
    assert stored == [10]  # one acceptance, not one per resend
    assert len(attempts) == 2
