"""The spool writing with ``O_DIRECT``: a group padded with zeros to the next 4 KiB
boundary, the padding skipped (not counted as damage) on recovery, damage in or after it
found as before, and segments of both layouts replayed together."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from tests.unit.test_spool import encode_record, make_record, segment_files
from tidegate.spool import FILE_HEADER, SeqSet, Spool, SpoolRecord
from tidegate.spool.direct_io import ALIGN


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % ALIGN)


def header_block() -> bytes:
    return padded(FILE_HEADER)


def append_each(spool: Spool, records: list[SpoolRecord]) -> None:
    """One group per record: each waits for the one before."""

    async def run() -> None:
        for record in records:
            await spool.append(record)

    asyncio.run(run())


def direct_fill(directory: Path, records: list[SpoolRecord]) -> None:
    spool = Spool(directory)
    append_each(spool, records)
    asyncio.run(spool.close())


def reopen(directory: Path) -> tuple[Spool, list[SpoolRecord]]:
    spool = Spool(directory)
    return spool, list(spool.records())


def close(spool: Spool) -> None:
    asyncio.run(spool.close())


def test_each_group_is_padded_to_the_next_boundary(tmp_path: Path) -> None:
    records = [make_record(1, tenant="é"), make_record(2, size=0), make_record(3, size=5000)]
    direct_fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    expected = header_block() + b"".join(padded(encode_record(r)) for r in records)
    assert segment.read_bytes() == expected
    assert len(expected) == 5 * ALIGN  # the header, two small groups, one of 5,066 bytes

    spool, replayed = reopen(tmp_path)
    assert replayed == records
    report = spool.recovery
    assert (report.records, report.bytes, report.max_seq) == (3, len(expected), 3)
    assert (report.torn_tail_bytes, report.corrupt_records, report.corrupt_bytes) == (0, 0, 0)
    close(spool)


def test_concurrent_appends_share_one_padded_group(tmp_path: Path) -> None:
    records = [make_record(seq, size=300) for seq in range(1, 41)]

    async def run() -> Spool:
        spool = Spool(tmp_path)
        await asyncio.gather(*(spool.append(record) for record in records))
        assert spool.durable == SeqSet(40)
        # The durable extent counts the padding; reading it gives every record.
        assert spool.size_bytes == segment_files(tmp_path)[0].stat().st_size
        assert spool.size_bytes % ALIGN == 0
        assert sorted(r.seq for r in spool.records()) == list(range(1, 41))
        return spool

    spool = asyncio.run(run())
    close(spool)
    data = segment_files(tmp_path)[0].read_bytes()
    records_bytes = sum(len(encode_record(r)) for r in records)
    # Fewer padded groups than records: the padding is less than a block per record.
    assert len(data) - len(header_block()) < records_bytes + len(records) * ALIGN // 2


def test_a_record_larger_than_the_buffer_round_trips(tmp_path: Path) -> None:
    records = [make_record(1, size=9 * 2**20), make_record(2, size=10), make_record(3, size=5)]
    direct_fill(tmp_path, records)
    spool, replayed = reopen(tmp_path)
    assert replayed == records
    assert spool.recovery.bytes == len(header_block()) + sum(
        len(padded(encode_record(r))) for r in records
    )
    close(spool)


def test_without_fsync_nothing_is_padded(tmp_path: Path) -> None:
    records = [make_record(1), make_record(2)]

    async def run() -> None:
        spool = Spool(tmp_path, fsync=False)
        for record in records:
            await spool.append(record)
        await spool.close()

    asyncio.run(run())
    (segment,) = segment_files(tmp_path)
    assert segment.read_bytes() == FILE_HEADER + b"".join(map(encode_record, records))


def test_a_torn_tail_inside_the_padding_is_truncated(tmp_path: Path) -> None:
    records = [make_record(seq, size=500) for seq in (1, 2)]
    direct_fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    end_of_records = 2 * ALIGN + len(encode_record(records[1]))
    os.truncate(segment, end_of_records + 100)  # cut inside the last group's padding

    spool, replayed = reopen(tmp_path)
    assert replayed == records
    report = spool.recovery
    assert (report.torn_tail_bytes, report.corrupt_records, report.bytes) == (
        100,
        0,
        end_of_records,
    )
    assert segment.stat().st_size == end_of_records
    close(spool)


def test_a_zero_block_after_the_last_group_is_a_torn_tail(tmp_path: Path) -> None:
    """A crash can leave the file longer than what was written: zeros from a boundary on
    are not padding."""
    records = [make_record(seq) for seq in (1, 2)]
    direct_fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    size = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(bytes(2 * ALIGN))

    spool, replayed = reopen(tmp_path)
    assert replayed == records
    assert (spool.recovery.torn_tail_bytes, spool.recovery.corrupt_records) == (2 * ALIGN, 0)
    assert segment.stat().st_size == size
    close(spool)


def test_a_damaged_byte_in_the_padding_is_a_corrupt_region(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = [make_record(seq, size=200) for seq in (1, 2, 3)]
    direct_fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    end_of_first = ALIGN + len(encode_record(records[0]))
    data[end_of_first + 50] = 0xEE
    segment.write_bytes(data)

    with caplog.at_level(logging.WARNING, logger="tidegate.spool"):
        spool, replayed = reopen(tmp_path)
    assert replayed == records
    report = spool.recovery
    assert (report.corrupt_records, report.corrupt_bytes) == (1, 2 * ALIGN - end_of_first)
    assert report.torn_tail_bytes == 0
    assert f"skipped {2 * ALIGN - end_of_first} corrupt bytes at offset {end_of_first}" in (
        caplog.text
    )
    close(spool)


def test_a_corrupt_record_before_padding_is_skipped_with_its_padding(tmp_path: Path) -> None:
    records = [make_record(seq, size=200) for seq in (1, 2, 3)]
    direct_fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    data[2 * ALIGN + 60] ^= 0x40  # the second record's payload
    segment.write_bytes(data)

    spool, replayed = reopen(tmp_path)
    assert replayed == [records[0], records[2]]
    report = spool.recovery
    assert (report.corrupt_records, report.corrupt_bytes, report.torn_tail_bytes) == (1, ALIGN, 0)
    close(spool)


def test_segments_of_both_layouts_replay_together_in_order(tmp_path: Path) -> None:
    """An upgrade: segments written through the page cache, then appends with O_DIRECT."""
    older = [make_record(seq) for seq in (1, 2, 3)]
    spool = Spool(tmp_path, direct_io=False)
    append_each(spool, older)
    close(spool)

    spool = Spool(tmp_path)
    newer = [make_record(seq) for seq in (4, 5)]
    append_each(spool, newer)
    assert list(spool.records()) == older + newer
    close(spool)

    first, second = segment_files(tmp_path)
    assert first.read_bytes() == FILE_HEADER + b"".join(map(encode_record, older))
    assert second.read_bytes() == header_block() + b"".join(padded(encode_record(r)) for r in newer)
    sizes = first.stat().st_size + second.stat().st_size
    spool, replayed = reopen(tmp_path)
    assert replayed == older + newer
    assert spool.release(SeqSet(5)) == sizes
    close(spool)
