"""Whatever mix of appends, crashes and releases, a reopened spool replays every acknowledged
record not yet released exactly once, byte for byte, and nothing that was never appended.

A crash is the spool's thread stopped with nothing pending (everything was acknowledged),
then the last segment given what a dying process leaves behind it: part of a group that was
being written (cut at a random offset at or past the durable length), random garbage, or
nothing.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.unit.test_spool import encode_record
from tests.unit.test_spool_direct import padded
from tidegate.spool import SeqSet, Spool, SpoolRecord

# Small, so that almost every group of appends ends its segment.
SEGMENT_BYTES = 512


def make_record(seq: int, size: int, rng: random.Random) -> SpoolRecord:
    tenant = ("", "acme", "テナント")[seq % 3]
    return SpoolRecord(
        seq, seq * 1000, tenant, seq.to_bytes(16, "little"), rng.randbytes(size), seq % 256
    )


class SpoolLifecycle(RuleBasedStateMachine):
    """Through the page cache: a group is its records back to back."""

    DIRECT_IO = False
    SEGMENT_BYTES = SEGMENT_BYTES

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="tidegate-spool-"))
        self.spool = self.open()
        self.next_seq = 1
        self.acknowledged: dict[int, SpoolRecord] = {}
        # Written by a crashing process but never acknowledged: may survive or not.
        self.unacknowledged: dict[int, SpoolRecord] = {}
        # Every seq some release() was told is committed: those records may be gone.
        self.committed = SeqSet()

    def open(self) -> Spool:
        return Spool(self.directory, segment_bytes=self.SEGMENT_BYTES, direct_io=self.DIRECT_IO)

    def group_bytes(self, records: list[SpoolRecord]) -> bytes:
        """What writing ``records`` as one group puts in the segment."""
        return b"".join(map(encode_record, records))

    def take_seqs(self, count: int) -> list[int]:
        seqs = list(range(self.next_seq, self.next_seq + count))
        self.next_seq += count
        return seqs

    @rule(
        sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=12),
        waves=st.integers(1, 4),
        rng=st.randoms(),
    )
    def append_batch(self, sizes: list[int], waves: int, rng: random.Random) -> None:
        """Appends in ``waves`` rounds of concurrent calls, so groups and segments vary."""
        seqs = self.take_seqs(len(sizes))
        order = sorted(seqs, key=lambda seq: seq + rng.randint(0, 3))  # slightly out of order
        records = [make_record(seq, size, rng) for seq, size in zip(order, sizes, strict=True)]

        async def run() -> None:
            for wave in range(waves):
                await asyncio.gather(*(self.spool.append(r) for r in records[wave::waves]))
            await self.spool.wait_durable(seqs)

        asyncio.run(run())
        self.acknowledged.update((record.seq, record) for record in records)

    @rule(
        leftover=st.sampled_from(["nothing", "torn group", "garbage"]),
        in_flight=st.integers(1, 4),
        rng=st.randoms(),
    )
    def crash_and_reopen(self, leftover: str, in_flight: int, rng: random.Random) -> None:
        asyncio.run(self.spool.close())
        last = max(self.directory.glob("*.seg"))
        lost: list[SpoolRecord] = []
        tail = written = b""
        if leftover == "torn group":
            lost = [
                make_record(seq, rng.randint(0, 3000), rng) for seq in self.take_seqs(in_flight)
            ]
            written = self.group_bytes(lost)
            tail = written[: rng.randint(0, len(written))]
        elif leftover == "garbage":
            tail = rng.randbytes(rng.randint(1, 2000))
        with last.open("ab") as file:
            file.write(tail)

        self.spool = self.open()
        report = self.spool.recovery
        replayed = {record.seq for record in self.spool.records()}
        survivors = [record for record in lost if record.seq in replayed]
        assert survivors == lost[: len(survivors)]
        assert report.corrupt_records == 0
        kept = len(self.group_bytes(lost)) if tail == written else 0
        kept = kept or sum(map(len, map(encode_record, survivors)))
        assert report.torn_tail_bytes + kept == len(tail)
        self.unacknowledged.update((record.seq, record) for record in lost)
        self.next_seq = max(self.next_seq, report.max_seq + 1)

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        seqs = range(self.next_seq)
        floor = data.draw(st.sampled_from(seqs))
        extras = (
            data.draw(st.sets(st.sampled_from(seqs[floor + 2 :])))
            if floor + 2 < len(seqs)
            else set()
        )
        size = self.spool.size_bytes
        freed = self.spool.release(SeqSet(floor, extras))
        assert size - self.spool.size_bytes == freed
        self.committed.update(range(1, floor + 1))
        self.committed.update(extras)

    @invariant()
    def replay_is_exact(self) -> None:
        replayed = list(self.spool.records())
        assert list(self.spool.records()) == replayed  # replay is idempotent
        seqs = [record.seq for record in replayed]
        assert len(set(seqs)) == len(seqs)
        for record in replayed:
            assert record in (
                self.acknowledged.get(record.seq),
                self.unacknowledged.get(record.seq),
            )
        kept = {seq for seq in self.acknowledged if seq not in self.committed}
        assert kept <= set(seqs)
        assert self.spool.record_count == len(replayed)
        skipped = [record.seq for record in self.spool.records(skip=self.committed)]
        assert skipped == [seq for seq in seqs if seq not in self.committed]

    def teardown(self) -> None:
        asyncio.run(self.spool.close())
        shutil.rmtree(self.directory)


SpoolLifecycle.TestCase.settings = settings(
    max_examples=50, stateful_step_count=12, deadline=None, database=None
)
TestSpoolLifecycle = SpoolLifecycle.TestCase


class DirectSpoolLifecycle(SpoolLifecycle):
    """With ``O_DIRECT``: a group ends with a padding record up to the next 4 KiB boundary,
    and a crash can leave any prefix of it, padding included. Segments hold a few groups."""

    DIRECT_IO = True
    SEGMENT_BYTES = 16 * 1024

    def group_bytes(self, records: list[SpoolRecord]) -> bytes:
        return padded(super().group_bytes(records))


DirectSpoolLifecycle.TestCase.settings = SpoolLifecycle.TestCase.settings
TestDirectSpoolLifecycle = DirectSpoolLifecycle.TestCase
