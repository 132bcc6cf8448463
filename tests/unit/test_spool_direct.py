"""The spool writing with ``O_DIRECT``: a group padded to the next 4 KiB boundary with a
padding record, the padding skipped (not counted as damage) on recovery, damage in or after
it found as before, zeroed records found as damage, write errors failing the spool, and
segments of both layouts replayed together."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from tests.unit.test_spool import encode_record, make_record, segment_files
from tidegate._core import SpoolGroupWriter
from tidegate.spool import FILE_HEADER, SeqSet, Spool, SpoolRecord, direct_io
from tidegate.spool.direct_io import ALIGN


def padding_record(gap: int) -> bytes:
    """A padding record of ``gap`` bytes, as the package docstring documents it."""
    body = bytes(gap - 12)
    return struct.pack("<III", 0x54475030, len(body), zlib.crc32(body)) + body


def padded(data: bytes) -> bytes:
    gap = -len(data) % ALIGN
    if gap == 0:
        return data
    return data + padding_record(gap if gap >= 12 else gap + ALIGN)


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


def test_a_small_gap_pads_to_the_boundary_after_next(tmp_path: Path) -> None:
    """A gap shorter than a padding record's head takes one more block."""
    head = len(encode_record(make_record(1, size=0)))
    size = ALIGN - head - 5  # the record ends 5 bytes before the boundary
    records = [make_record(1, size=size), make_record(2)]
    direct_fill(tmp_path, records)
    (segment,) = segment_files(tmp_path)
    data = segment.read_bytes()
    assert len(padded(encode_record(records[0]))) == 2 * ALIGN
    assert data == header_block() + b"".join(padded(encode_record(r)) for r in records)
    spool, replayed = reopen(tmp_path)
    assert replayed == records
    assert (spool.recovery.corrupt_records, spool.recovery.torn_tail_bytes) == (0, 0)
    close(spool)


@pytest.mark.parametrize("direct_io", [True, False])
def test_a_record_wiped_to_zeros_is_damage_not_padding(tmp_path: Path, direct_io: bool) -> None:
    records = [make_record(seq, size=200) for seq in (1, 2, 3)]
    spool = Spool(tmp_path, direct_io=direct_io)
    append_each(spool, records)
    close(spool)
    (segment,) = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    record_size = len(encode_record(records[1]))
    start = 2 * ALIGN if direct_io else len(FILE_HEADER) + record_size
    data[start : start + record_size] = bytes(record_size)
    segment.write_bytes(data)

    spool, replayed = reopen(tmp_path)
    assert replayed == [records[0], records[2]]
    report = spool.recovery
    assert report.corrupt_records == 1
    assert report.corrupt_bytes == (ALIGN if direct_io else record_size)
    close(spool)


def run_with_file_size_limit(limit: int, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter whose files cannot grow past ``limit`` bytes: writes
    past it fail with EFBIG, a real error from the kernel. A subprocess, because the limit
    holds for every file of the process."""
    prelude = f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    """
    code = textwrap.dedent(prelude) + textwrap.dedent(script)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_header_that_cannot_be_written_fails_opening_cleanly(tmp_path: Path) -> None:
    result = run_with_file_size_limit(
        2048,
        f"""
        from pathlib import Path
        from tidegate.spool import Spool, SpoolError
        try:
            Spool(Path({str(tmp_path)!r}))
        except SpoolError as exc:
            print("SpoolError", exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SpoolError cannot recover spool"), result.stdout
    assert "File too large" in result.stdout
    assert segment_files(tmp_path) == []  # the half-made segment is gone


def test_a_failed_group_write_fails_the_spool_and_close_still_finishes(tmp_path: Path) -> None:
    result = run_with_file_size_limit(
        3 * ALIGN,
        f"""
        import asyncio, threading
        from pathlib import Path
        from tidegate.spool import Spool, SpoolFatalError, SpoolRecord
        errors = []
        threading.excepthook = lambda args: errors.append(repr(args.exc_value))
        fatal = []

        async def main():
            spool = Spool(Path({str(tmp_path)!r}))
            spool.add_fatal_listener(fatal.append)
            await spool.append(SpoolRecord(1, 0, "", bytes(16), bytes(100)))
            for seq in (2, 3):
                try:
                    await spool.append(SpoolRecord(seq, 0, "", bytes(16), bytes(5000)))
                except SpoolFatalError as exc:
                    cause = exc.__cause__
                    print(seq, "SpoolFatalError", type(cause).__name__, cause.errno)
            await spool.close()

        asyncio.run(main())
        print("fatal listeners", len(fatal), "thread errors", errors)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2 SpoolFatalError OSError 27",  # EFBIG, as the kernel said it
        "3 SpoolFatalError OSError 27",
        "fatal listeners 1 thread errors []",
    ], result.stdout
    spool, replayed = reopen(tmp_path)
    assert [r.seq for r in replayed] == [1]
    close(spool)


def test_a_filesystem_that_refuses_the_direct_write_gets_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The kernel refuses an O_DIRECT write that is not aligned (EINVAL), as some
    filesystems refuse every O_DIRECT write: with no alignment asked for, the header's write
    is refused and the segment falls back to the page cache."""
    monkeypatch.setattr(direct_io, "ALIGN", 1)
    records = [make_record(1), make_record(2)]
    with caplog.at_level(logging.INFO, logger="tidegate.spool"):
        spool = Spool(tmp_path)
        append_each(spool, records)
        close(spool)
    assert "O_DIRECT refused, writing through the page cache" in caplog.text
    (segment,) = segment_files(tmp_path)
    assert segment.read_bytes() == FILE_HEADER + b"".join(map(encode_record, records))
    spool, replayed = reopen(tmp_path)
    assert replayed == records
    close(spool)


def test_the_core_writer_refuses_what_the_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="align must be 1 or a power of two"):
        SpoolGroupWriter(8)
    writer = SpoolGroupWriter(ALIGN)
    with (tmp_path / "f").open("wb") as file:
        with pytest.raises(ValueError, match="request_hash must be 16 bytes"):
            writer.write_group(file.fileno(), [(1, 0, 0, b"", bytes(15), b"")], sync=False)
        with pytest.raises(ValueError, match="tenant of 65536 bytes"):
            writer.write_group(file.fileno(), [(1, 0, 0, bytes(65536), bytes(16), b"")], sync=False)
        with pytest.raises(ValueError, match="fd must be open"):
            writer.write_group(-1, [], sync=False)
    assert (tmp_path / "f").stat().st_size == 0
