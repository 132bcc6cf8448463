"""The durable spool: round trips, group commit, segments and release, recovery from torn
tails and corrupt records, fsync failure, close, and SeqSet."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import struct
import threading
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tidegate.spool import (
    FILE_HEADER,
    SeqSet,
    Spool,
    SpoolClosedError,
    SpoolError,
    SpoolFatalError,
    SpoolRecord,
)

HASH = bytes(range(16))


def make_record(seq: int, size: int = 100, tenant: str = "acme", flags: int = 0) -> SpoolRecord:
    """A record whose payload is derived from its seq, so equal seqs give equal records."""
    payload = random.Random(seq).randbytes(size)
    return SpoolRecord(seq, 1_700_000_000_000_000_000 + seq, tenant, HASH, payload, flags)


def encode_record(record: SpoolRecord) -> bytes:
    """The record as the module docstring documents it, built independently of the spool."""
    tenant = record.tenant.encode()
    body = (
        struct.pack("<QqBH", record.seq, record.now_ns, record.flags, len(tenant))
        + record.request_hash
        + tenant
        + record.payload
    )
    return struct.pack("<III", 0x54475231, len(body), zlib.crc32(body)) + body


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def fill(directory: Path, records: Iterable[SpoolRecord]) -> None:
    """Append ``records`` one after another to the spool in ``directory``, then close it.
    Through the page cache, so that the segment is the records back to back (the layout
    with ``O_DIRECT`` is in test_spool_direct.py)."""

    async def run() -> None:
        spool = Spool(directory, direct_io=False)
        for record in records:
            await spool.append(record)
        await spool.close()

    asyncio.run(run())


def reopen(directory: Path) -> tuple[Spool, list[SpoolRecord]]:
    spool = Spool(directory, direct_io=False)
    return spool, list(spool.records())


def close(spool: Spool) -> None:
    asyncio.run(spool.close())


class CountingFsync:
    """The real fdatasync, counted; raises EIO instead once ``failing`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.failing:
            raise OSError(errno.EIO, "injected I/O error")
        os.fdatasync(fd)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    records = [
        SpoolRecord(1, -5, "テナント-é", HASH, b"", 0),
        SpoolRecord(7, 2**63 - 1, "", bytes(16), b"\x00payload\xff", 255),
        SpoolRecord(2**64 - 1, -(2**63), "t" * 65535, HASH, os.urandom(70_000), 3),
        make_record(3),
    ]
    fill(tmp_path, records)

    spool, replayed = reopen(tmp_path)
    assert replayed == records
    assert list(spool.records()) == records
    (first, _) = segment_files(tmp_path)
    assert spool.recovery.segments == 1
    assert spool.recovery.records == 4
    assert spool.recovery.bytes == first.stat().st_size
    assert spool.recovery.max_seq == 2**64 - 1
    close(spool)


def test_segment_bytes_are_the_documented_format(tmp_path: Path) -> None:
    records = [make_record(1, tenant="é"), make_record(2, size=0)]
    fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    assert segment.name == "0000000000000001.seg"
    assert segment.read_bytes() == FILE_HEADER + b"".join(map(encode_record, records))


def test_concurrent_appends_share_fsyncs(tmp_path: Path) -> None:
    fsync = CountingFsync()
    records = [make_record(seq, size=1000) for seq in range(1, 201)]

    async def run() -> int:
        spool = Spool(tmp_path, fsync_function=fsync)
        fsync.calls = 0
        await asyncio.gather(*(spool.append(record) for record in records))
        calls = fsync.calls
        assert spool.durable == SeqSet(200)
        assert list(spool.records()) == records
        await spool.close()
        return calls

    calls = asyncio.run(run())
    assert 1 <= calls < 50


def test_appends_from_several_event_loops(tmp_path: Path) -> None:
    spool = Spool(tmp_path)

    async def appender(first: int) -> None:
        await asyncio.gather(*(spool.append(make_record(seq)) for seq in range(first, 1000, 4)))

    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(asyncio.run, appender(first)) for first in (1, 2, 3, 4)]
        for run in runs:
            run.result()
    assert spool.durable == SeqSet(999)
    assert sorted(record.seq for record in spool.records()) == list(range(1, 1000))
    close(spool)


def test_rolling_then_release_deletes_exactly_the_covered_sealed_segments(tmp_path: Path) -> None:
    record_bytes = len(encode_record(make_record(1, size=1000)))
    # Two records take a segment past 2000 bytes, so each sealed segment holds exactly two.
    spool = Spool(tmp_path, segment_bytes=2000, direct_io=False)

    async def append(seqs: Iterable[int]) -> None:
        for seq in seqs:
            await spool.append(make_record(seq, size=1000))

    asyncio.run(append(range(1, 11)))
    segment_size = len(FILE_HEADER) + 2 * record_bytes
    assert [p.name for p in segment_files(tmp_path)] == [f"{n:016d}.seg" for n in range(1, 7)]
    assert spool.size_bytes == 5 * segment_size + len(FILE_HEADER)
    assert spool.record_count == 10

    assert spool.release(SeqSet(4)) == 2 * segment_size
    assert [p.name[15] for p in segment_files(tmp_path)] == ["3", "4", "5", "6"]
    assert spool.release(SeqSet(4, [6])) == 0  # seq 5 keeps segment 3
    assert spool.release(SeqSet(0, [7, 8, 10])) == segment_size  # segment 4 only
    assert [p.name[15] for p in segment_files(tmp_path)] == ["3", "5", "6"]
    assert spool.record_count == 4
    assert spool.size_bytes == 2 * segment_size + len(FILE_HEADER)
    assert [r.seq for r in spool.records()] == [5, 6, 9, 10]

    # The active segment stays, whatever is committed.
    assert spool.release(SeqSet(100)) == 2 * segment_size
    assert [p.name for p in segment_files(tmp_path)] == ["0000000000000006.seg"]
    assert spool.record_count == 0
    asyncio.run(append([11]))
    assert [r.seq for r in spool.records()] == [11]
    close(spool)

    # After a restart the segment that was active is sealed and released like the others.
    spool, replayed = reopen(tmp_path)
    assert [r.seq for r in replayed] == [11]
    assert spool.release(SeqSet(11)) == len(FILE_HEADER) + record_bytes
    assert [p.name for p in segment_files(tmp_path)] == ["0000000000000007.seg"]
    close(spool)


def test_records_skips_committed_seqs_and_keeps_file_order(tmp_path: Path) -> None:
    order = [3, 1, 2, 10, 4, 5, 7, 6, 9, 8]
    fill(tmp_path, [make_record(seq) for seq in order])
    spool, replayed = reopen(tmp_path)
    assert [r.seq for r in replayed] == order
    skip = SeqSet(3, [5, 9])
    assert [r.seq for r in spool.records(skip)] == [10, 4, 7, 6, 8]
    assert list(spool.records(skip)) == list(spool.records(skip))
    close(spool)


def test_records_during_appends_reads_only_durable_records(tmp_path: Path) -> None:
    async def run() -> None:
        spool = Spool(tmp_path)
        await spool.append(make_record(1))
        replay = spool.records()
        await spool.append(make_record(2))
        assert [r.seq for r in replay] == [1]
        await spool.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("cut", "description"),
    [
        (3, "inside the record header"),
        (12, "the record header only"),
        (40, "inside the body head"),
        (-1, "one byte short"),
    ],
)
def test_torn_tail_is_truncated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cut: int, description: str
) -> None:
    records = [make_record(seq, size=500) for seq in range(1, 6)]
    fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    last_start = len(FILE_HEADER) + sum(len(encode_record(r)) for r in records[:4])
    kept = last_start + (cut % len(encode_record(records[4])))
    os.truncate(segment, kept)

    with caplog.at_level(logging.WARNING, logger="tidegate.spool"):
        spool, replayed = reopen(tmp_path)
    assert replayed == records[:4], description
    report = spool.recovery
    assert (report.torn_tail_bytes, report.corrupt_records, report.corrupt_bytes) == (
        kept - last_start,
        0,
        0,
    )
    assert (report.records, report.bytes, report.max_seq) == (4, last_start, 4)
    assert segment.stat().st_size == last_start
    assert f"{segment}: truncated a torn tail" in caplog.text
    assert f"offset {last_start}" in caplog.text

    asyncio.run(spool.append(make_record(6)))
    assert [r.seq for r in spool.records()] == [1, 2, 3, 4, 6]
    assert segment.stat().st_size == last_start  # appends go to a new segment
    close(spool)
    spool, replayed = reopen(tmp_path)
    assert [r.seq for r in replayed] == [1, 2, 3, 4, 6]
    assert spool.recovery.torn_tail_bytes == 0
    close(spool)


def test_garbage_after_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    records = [make_record(seq) for seq in range(1, 4)]
    fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    size = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(random.Random(7).randbytes(3000))

    spool, replayed = reopen(tmp_path)
    assert replayed == records
    assert (spool.recovery.torn_tail_bytes, spool.recovery.corrupt_records) == (3000, 0)
    assert segment.stat().st_size == size
    close(spool)


@pytest.mark.parametrize(
    ("offset_in_record", "field"),
    [(0, "magic"), (5, "body_length"), (9, "crc32"), (14, "seq"), (60, "payload"), (-1, "end")],
)
def test_corrupt_record_in_the_middle_is_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, offset_in_record: int, field: str
) -> None:
    records = [make_record(seq, size=200) for seq in range(1, 11)]
    fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    sizes = [len(encode_record(r)) for r in records]
    start = len(FILE_HEADER) + sum(sizes[:3])
    data = bytearray(segment.read_bytes())
    data[start + offset_in_record % sizes[3]] ^= 0x40
    segment.write_bytes(data)

    with caplog.at_level(logging.WARNING, logger="tidegate.spool"):
        spool, replayed = reopen(tmp_path)
    assert replayed == records[:3] + records[4:], field
    report = spool.recovery
    assert (report.corrupt_records, report.corrupt_bytes, report.torn_tail_bytes) == (
        1,
        sizes[3],
        0,
    )
    assert (report.records, report.max_seq, report.bytes) == (9, 10, len(data))
    assert segment.stat().st_size == len(data)
    assert f"skipped {sizes[3]} corrupt bytes at offset {start}" in caplog.text
    close(spool)


def test_damaged_last_record_of_the_last_segment_is_a_torn_tail(tmp_path: Path) -> None:
    records = [make_record(seq) for seq in range(1, 4)]
    fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-1] ^= 1
    segment.write_bytes(data)

    spool, replayed = reopen(tmp_path)
    assert replayed == records[:2]
    assert spool.recovery.torn_tail_bytes == len(encode_record(records[2]))
    assert spool.recovery.corrupt_records == 0
    close(spool)


def test_damaged_tail_of_an_earlier_segment_is_corrupt_not_truncated(tmp_path: Path) -> None:
    fill(tmp_path, [make_record(seq) for seq in (1, 2, 3)])
    fill(tmp_path, [make_record(seq) for seq in (4, 5)])
    first = segment_files(tmp_path)[0]
    third_size = len(encode_record(make_record(3)))
    os.truncate(first, first.stat().st_size - 10)
    with first.open("ab") as file:
        file.write(b"\xee" * 100)
    size = first.stat().st_size

    spool, replayed = reopen(tmp_path)
    assert [r.seq for r in replayed] == [1, 2, 4, 5]
    report = spool.recovery
    assert (report.segments, report.records, report.max_seq) == (2, 4, 5)
    assert (report.corrupt_records, report.corrupt_bytes) == (1, third_size - 10 + 100)
    assert report.torn_tail_bytes == 0
    assert first.stat().st_size == size
    close(spool)


def test_segment_with_a_wrong_header_is_ignored_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fill(tmp_path, [make_record(seq) for seq in (1, 2)])
    fill(tmp_path, [make_record(3)])
    first = segment_files(tmp_path)[0]
    data = first.read_bytes()
    first.write_bytes(b"XXSPOOL1" + data[8:])

    with caplog.at_level(logging.WARNING, logger="tidegate.spool"):
        spool, replayed = reopen(tmp_path)
    assert [r.seq for r in replayed] == [3]
    report = spool.recovery
    assert (report.corrupt_records, report.corrupt_bytes, report.records) == (1, len(data), 1)
    assert "wrong file header" in caplog.text
    assert spool.size_bytes == report.bytes + len(FILE_HEADER)
    spool.release(SeqSet(100))
    assert first.exists()
    close(spool)


@pytest.mark.parametrize(("content", "torn"), [(b"", 0), (FILE_HEADER, 0), (FILE_HEADER[:3], 3)])
def test_an_empty_last_segment_is_fine(tmp_path: Path, content: bytes, torn: int) -> None:
    fill(tmp_path, [make_record(1)])
    (tmp_path / "0000000000000009.seg").write_bytes(content)

    spool, replayed = reopen(tmp_path)
    assert [r.seq for r in replayed] == [1]
    report = spool.recovery
    assert (report.segments, report.torn_tail_bytes, report.corrupt_records) == (2, torn, 0)
    left = 8 if content == FILE_HEADER else 0
    assert (tmp_path / "0000000000000009.seg").stat().st_size == left
    assert segment_files(tmp_path)[-1].name == "0000000000000010.seg"
    close(spool)


def test_fsync_failure_fails_the_pending_and_every_later_append(tmp_path: Path) -> None:
    fsync = CountingFsync()
    fatal: list[BaseException] = []

    async def run() -> None:
        spool = Spool(tmp_path, fsync_function=fsync)
        spool.add_fatal_listener(fatal.append)
        await spool.append(make_record(1))
        fsync.failing = True
        fsync.calls = 0
        results = await asyncio.gather(
            *(spool.append(make_record(seq)) for seq in range(2, 12)), return_exceptions=True
        )
        assert all(isinstance(result, SpoolFatalError) for result in results)
        cause = results[0].__cause__
        assert isinstance(cause, OSError)
        assert cause.errno == errno.EIO
        with pytest.raises(SpoolFatalError) as later:
            await spool.append(make_record(20))
        assert later.value.__cause__ is cause
        with pytest.raises(SpoolFatalError):
            await spool.wait_durable([2])
        await spool.wait_durable([1])  # fsynced before the failure
        assert spool.durable == SeqSet(1)
        assert fsync.calls == 1  # never retried
        late: list[BaseException] = []
        spool.add_fatal_listener(late.append)
        assert len(late) == 1
        await spool.close()

    asyncio.run(run())
    assert len(fatal) == 1
    assert isinstance(fatal[0], SpoolFatalError)
    assert isinstance(fatal[0].__cause__, OSError)


def writer_threads(directory: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"tidegate-spool-{directory.name}"]


def test_close_finishes_pending_appends_then_refuses(tmp_path: Path) -> None:
    async def run() -> None:
        spool = Spool(tmp_path)
        assert len(writer_threads(tmp_path)) == 1
        pending = [asyncio.create_task(spool.append(make_record(seq))) for seq in range(1, 21)]
        await asyncio.sleep(0)
        await spool.close()
        assert writer_threads(tmp_path) == []
        await asyncio.gather(*pending)
        assert spool.durable == SeqSet(20)
        with pytest.raises(SpoolClosedError):
            await spool.append(make_record(21))
        with pytest.raises(SpoolClosedError):
            await spool.wait_durable([21])
        await spool.close()

    asyncio.run(run())
    spool, replayed = reopen(tmp_path)
    assert [r.seq for r in replayed] == list(range(1, 21))
    close(spool)


def test_one_spool_per_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path)
    close(spool)
    close(Spool(tmp_path))


def test_wait_durable_returns_once_every_seq_is_durable(tmp_path: Path) -> None:
    async def run() -> None:
        spool = Spool(tmp_path)
        waiter = asyncio.create_task(spool.wait_durable([2, 3]))
        await spool.append(make_record(3))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await spool.append(make_record(2))
        await asyncio.wait_for(waiter, 5)
        await spool.wait_durable([])
        await spool.close()

    asyncio.run(run())


def test_cancelled_append_leaves_the_writer_working(tmp_path: Path) -> None:
    async def run() -> None:
        spool = Spool(tmp_path)
        task = asyncio.create_task(spool.append(make_record(1)))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await spool.append(make_record(2))
        assert spool.durable == SeqSet(2)  # a cancelled append is not withdrawn
        await spool.close()

    asyncio.run(run())


def test_a_seq_already_durable_is_refused(tmp_path: Path) -> None:
    fill(tmp_path, [make_record(1), make_record(5)])

    async def run() -> None:
        spool = Spool(tmp_path)
        assert spool.durable == SeqSet(5)  # seqs up to recovery.max_seq are settled
        for seq in (1, 3, 5):
            with pytest.raises(ValueError, match=f"seq {seq} is already durable"):
                await spool.append(make_record(seq))
        await spool.append(make_record(6))
        await spool.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"seq": 0}, "seq must be"),
        ({"seq": 2**64}, "seq must be"),
        ({"now_ns": 2**63}, "now_ns"),
        ({"flags": 256}, "flags"),
        ({"request_hash": bytes(15)}, "request_hash"),
        ({"tenant": "é" * 40_000}, "tenant"),
    ],
)
def test_record_fields_are_checked(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "seq": 1,
        "now_ns": 0,
        "tenant": "t",
        "request_hash": HASH,
        "payload": b"",
    }
    with pytest.raises(ValueError, match=message):
        SpoolRecord(**{**values, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("floor", "extras", "added", "expected_floor", "expected_extras"),
    [
        (0, (), [1, 2, 3], 3, ()),
        (0, (), [3, 2], 0, (2, 3)),
        (0, (), [3, 2, 1], 3, ()),
        (0, (), [2, 5, 1], 2, (5,)),
        (5, (), [3, 5, 7], 5, (7,)),
        (0, (1, 2, 4), [], 2, (4,)),
        (2, (4, 6), [3], 4, (6,)),
        (2, (4, 6), [5], 2, (4, 5, 6)),
    ],
)
def test_seqset_floor_advances(
    floor: int,
    extras: tuple[int, ...],
    added: list[int],
    expected_floor: int,
    expected_extras: tuple[int, ...],
) -> None:
    seqs = SeqSet(floor, extras)
    seqs.update(added)
    assert (seqs.floor, seqs.extras) == (expected_floor, expected_extras)


def test_seqset_membership_equality_and_copy() -> None:
    seqs = SeqSet(3, [7, 5])
    assert [seq in seqs for seq in range(9)] == [
        False, True, True, True, False, True, False, True, False,
    ]  # fmt: skip
    assert "3" not in seqs
    assert seqs.covers([1, 3, 5, 7])
    assert seqs.covers([])
    assert not seqs.covers([1, 4])
    assert repr(seqs) == "SeqSet(floor=3, extras=(5, 7))"
    assert SeqSet() == SeqSet(0, [])
    assert SeqSet(0, [1, 2]) == SeqSet(2)
    assert seqs != SeqSet(3, [5])
    clone = seqs.copy()
    clone.add(4)
    assert (clone.floor, clone.extras) == (5, (7,))
    assert (seqs.floor, seqs.extras) == (3, (5, 7))
    with pytest.raises(ValueError, match="seqs start at 1"):
        seqs.add(0)
    with pytest.raises(ValueError, match="floor"):
        SeqSet(-1)
