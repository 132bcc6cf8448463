"""What stands between an accepted Export request and its acknowledgement, per signal.

An ``Intake`` owns the signal's spool (none in ``durability = "memory"`` mode), the requests
accepted recently (to acknowledge a client's resend of the same bytes without storing them
twice) and the bookkeeping its writer commits: which spool records are stored, and the
accepted requests whose rows go into ``tidegate_accepted_requests`` with their data.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from tidegate._core import request_digest
from tidegate.spool import SeqSet, Spool, SpoolRecord

log = logging.getLogger(__name__)

NS_PER_SECOND = 1_000_000_000


def request_hash(signal: str, tenant: str, request: bytes) -> bytes:
    """The 16-byte identity of a request: equal bytes from the same tenant are a resend.
    xxh3-128 in the core: BLAKE2b here cost about 6 % of the daemon's CPU at full load."""
    return request_digest(signal, tenant, request)


@dataclass(frozen=True, slots=True)
class Accepted:
    """An acknowledged request, as ``tidegate_accepted_requests`` keeps it."""

    request_hash: bytes
    response: bytes
    now_ns: int


class RecentRequests:
    """Requests accepted within the horizon, by hash, oldest first."""

    def __init__(self, horizon_seconds: float) -> None:
        self._horizon_ns = int(horizon_seconds * NS_PER_SECOND)
        self._entries: OrderedDict[bytes, Accepted] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes, now_ns: int) -> Accepted | None:
        self._prune(now_ns)
        return self._entries.get(digest)

    def add(self, accepted: Accepted, now_ns: int) -> None:
        if accepted.now_ns <= now_ns - self._horizon_ns:
            return
        self._entries[accepted.request_hash] = accepted
        self._entries.move_to_end(accepted.request_hash)
        self._prune(now_ns)

    def _prune(self, now_ns: int) -> None:
        oldest = now_ns - self._horizon_ns
        while self._entries:
            first = next(iter(self._entries.values()))
            if first.now_ns > oldest:
                return
            self._entries.popitem(last=False)


class Intake:
    """One signal's spool, sequence bookkeeping and recent requests."""

    def __init__(self, signal: str, spool: Spool | None, horizon_seconds: float) -> None:
        self.signal = signal
        self.spool = spool
        self.recent = RecentRequests(horizon_seconds)
        # Spool records stored in PostgreSQL (by a committed batch or block).
        self.committed = SeqSet()
        # Accepted since the last commit that covered them, by seq.
        self._unrecorded: dict[int, Accepted] = {}
        # Requests being accepted right now, by hash: a resend waits for the first's answer.
        self._in_flight: dict[bytes, asyncio.Future[bytes]] = {}
        # Spooled but not yet in the core (its write queue was full): the catch-up task
        # ingests them from the spool. While any waits, new requests wait behind them.
        self.deferred: set[int] = set()
        self.deferring = False
        self.deferred_waiting = asyncio.Event()

    @property
    def durable(self) -> bool:
        return self.spool is not None

    @property
    def spool_bytes(self) -> int:
        return self.spool_size()

    @property
    def unstored_bytes(self) -> int:
        """Spool bytes of requests not yet stored (segments kept only for the open rollups
        of stored requests do not count): what the spool limit bounds."""
        if self.spool is None:
            return 0
        return self.spool.bytes_after(self.committed.floor)

    def spool_size(self) -> int:
        return 0 if self.spool is None else self.spool.size_bytes

    def spool_count(self) -> int:
        return 0 if self.spool is None else self.spool.record_count

    def in_flight(self, digest: bytes) -> asyncio.Future[bytes] | None:
        """The answer a request with these bytes is waiting for, when one is being accepted."""
        return self._in_flight.get(digest)

    def begin(self, digest: bytes) -> asyncio.Future[bytes]:
        """Marks a request as being accepted; ``finish`` with its response or error."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._in_flight[digest] = future
        return future

    def finish(self, digest: bytes, future: asyncio.Future[bytes]) -> None:
        if self._in_flight.get(digest) is future:
            del self._in_flight[digest]
        if not future.done():
            future.cancel()

    def defer(self, seq: int) -> None:
        """Notes a request that goes to the spool only, for the catch-up task."""
        self.deferred.add(seq)
        self.deferring = True
        self.deferred_waiting.set()

    async def persist(self, record: SpoolRecord, response: bytes) -> None:
        """Make an ingested request durable (fsynced in the spool) and remember it as
        accepted. Raises SpoolFatalError when the spool cannot be written."""
        if self.spool is not None:
            await self.spool.append(record)
        self.note_accepted(record, response)

    def queue_durable(
        self, record: SpoolRecord, durable: asyncio.Future[None], loop: asyncio.AbstractEventLoop
    ) -> None:
        """From any thread (the decode thread that ingested it): queue an ingested request
        in the spool. ``durable``, a future of ``loop``, resolves once the request is fsynced
        (at once without a spool), or fails as ``persist`` would; the loop then calls
        ``note_accepted``. Raises at once what the spool refuses at once."""
        if self.spool is not None:
            self.spool.submit(record, durable, loop)
        else:
            loop.call_soon_threadsafe(_resolve, durable)

    def note_accepted(self, record: SpoolRecord, response: bytes) -> None:
        """Remember a durable request as accepted (see ``remember``)."""
        self.remember(record.seq, Accepted(record.request_hash, response, record.now_ns))

    def remember(self, seq: int, accepted: Accepted) -> None:
        """Notes an accepted request (also one replayed from the spool at startup)."""
        self.recent.add(accepted, accepted.now_ns)
        self._unrecorded[seq] = accepted

    async def wait_durable(self, seqs: list[int]) -> None:
        """Returns once every one of ``seqs`` is in the spool: data may be committed only
        then, or a crash could leave stored data that no client saw acknowledged."""
        if self.spool is not None and seqs:
            await self.spool.wait_durable(seqs)

    def accepted_in(self, seqs: list[int]) -> list[Accepted]:
        """The accepted requests of ``seqs`` not yet recorded, for their commit's
        ``tidegate_accepted_requests`` rows."""
        return [a for seq in seqs if (a := self._unrecorded.get(seq)) is not None]

    def committed_through(self, seqs: list[int]) -> SeqSet:
        """What ``committed`` will be once ``seqs`` commit (the checkpoint to write)."""
        after = self.committed.copy()
        after.update(seqs)
        return after

    def mark_committed(self, seqs: list[int], keep_from: int | None = None) -> int:
        """After the commit of ``seqs``: forget their accepted rows and delete the spool
        segments every record of which is stored and below ``keep_from`` (the records from
        there on still hold data of open rollups); returns the bytes freed."""
        self.committed.update(seqs)
        for seq in seqs:
            self._unrecorded.pop(seq, None)
        if self.spool is None:
            return 0
        releasable = self.committed
        if keep_from is not None:
            releasable = SeqSet(
                min(self.committed.floor, keep_from - 1),
                [seq for seq in self.committed.extras if seq < keep_from],
            )
        return self.spool.release(releasable)

    def next_seq_floor(self) -> int:
        """Sequence numbers given out from now on must be above everything the spool and
        the checkpoint know."""
        known = [self.committed.floor, *self.committed.extras]
        if self.spool is not None:
            known.append(self.spool.recovery.max_seq)
        return max(known) + 1

    async def close(self) -> None:
        if self.spool is not None:
            await self.spool.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled by its caller
        future.set_result(None)


def spool_id(directory: Path) -> str:
    """The identity of a spool directory (created once): checkpoints are kept per spool, so
    that several daemons can share one database."""
    path = directory / "id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        value = uuid.uuid4().hex
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value + "\n")
        tmp.replace(path)
        return value
