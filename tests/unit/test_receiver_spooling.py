"""The decode thread that ingests a request queues it in the spool itself: the answer comes
once the request is fsynced, and whatever the spool refuses, at once or at its fsync, is the
call's answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from tests.payloads import gauge, number_point, request
from tests.unit.test_receiver_admission import make
from tests.unit.test_receiver_resends import Call, RefusedError
from tidegate.config import Config
from tidegate.intake import Intake, request_hash
from tidegate.spool import Spool

POINTS = [number_point(float(i), {"i": i}) for i in range(10)]
PAYLOAD = request([gauge("spooled", POINTS)]).SerializeToString()
OTHER = request([gauge("other", POINTS)]).SerializeToString()


def export_twice(intake: Intake, close_spool_first: bool = False) -> list[bytes | BaseException]:
    """Two different requests through a receiver (real core) into ``intake``."""
    signal, receiver = make(Config(), intake)

    async def send() -> list[bytes | BaseException]:
        if close_spool_first and intake.spool is not None:
            await intake.spool.close()
        answers = await asyncio.gather(
            receiver.export(signal, PAYLOAD, Call()),
            receiver.export(signal, OTHER, Call()),
            return_exceptions=True,
        )
        await receiver.close()
        if intake.spool is not None:
            await intake.spool.close()
        return answers

    return asyncio.run(send())


def test_an_answered_request_is_in_the_spool(tmp_path: Path) -> None:
    intake = Intake("metrics", Spool(tmp_path / "spool"), 600)
    answers = export_twice(intake)
    assert all(isinstance(answer, bytes) for answer in answers), answers
    records = list(Spool(tmp_path / "spool").records())
    assert sorted(r.payload for r in records) == sorted([PAYLOAD, OTHER])
    accepted = intake.accepted_in([r.seq for r in records])
    assert sorted(a.request_hash for a in accepted) == sorted(r.request_hash for r in records)
    assert sorted(a.response for a in accepted) == sorted(answers)  # type: ignore[type-var]
    digest = request_hash("metrics", "default", PAYLOAD)
    assert intake.recent.get(digest, records[0].now_ns) is not None


def test_without_a_spool_requests_are_answered_and_remembered() -> None:
    intake = Intake("metrics", None, 600)
    answers = export_twice(intake)
    assert all(isinstance(answer, bytes) for answer in answers), answers
    assert len(intake.recent) == 2


def test_a_closed_spool_refuses_the_call(tmp_path: Path) -> None:
    intake = Intake("metrics", Spool(tmp_path / "spool"), 600)
    answers = export_twice(intake, close_spool_first=True)
    assert [a.code for a in answers if isinstance(a, RefusedError)] == [
        grpc.StatusCode.UNAVAILABLE
    ] * 2
    assert len(intake.recent) == 0


def test_a_failed_fsync_refuses_the_call(tmp_path: Path) -> None:
    fsyncs: list[int] = []
    failing = False

    def failing_fsync(fd: int) -> None:
        if failing:  # once open: the groups' fsyncs
            fsyncs.append(fd)
            raise OSError(5, "Input/output error")

    spool = Spool(tmp_path / "spool", fsync_function=failing_fsync)
    failing = True
    intake = Intake("metrics", spool, 600)
    answers = export_twice(intake)
    assert fsyncs, "the group was fsynced"
    assert all(isinstance(a, RefusedError) for a in answers), answers
    assert {a.code for a in answers if isinstance(a, RefusedError)} == {grpc.StatusCode.UNAVAILABLE}
    assert len(intake.recent) == 0
