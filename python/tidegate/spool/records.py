"""The spool's records as the ``tidegate.spool`` docstring lays them out on disk: the spool's
errors, ``SpoolRecord``, and encoding, decoding, scanning and replaying segment bytes."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tidegate._core import TidegateError
from tidegate.spool.seqset import SeqSet

FILE_HEADER = b"TGSPOOL1"
RECORD_MAGIC = 0x54475231
# A padding record: same framing, a body of zeros that only fills the segment up to an
# alignment boundary (groups written with O_DIRECT).
PAD_MAGIC = 0x54475030
_RECORD_HEAD = struct.Struct("<III")
_BODY_HEAD = struct.Struct("<QqBH16s")
_MAGIC_BYTES = _RECORD_HEAD.pack(RECORD_MAGIC, 0, 0)[:4]


class SpoolError(TidegateError):
    """The spool cannot do what was asked (its directory cannot be opened or is in use)."""


class SpoolFatalError(SpoolError):
    """A write or fsync failed: nothing may be acknowledged on top of it. The spool takes no
    more appends; restart, and recovery decides what survived."""


class SpoolClosedError(SpoolError):
    """The spool was closed."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One accepted Export request, as it is spooled and replayed."""

    seq: int  # u64 from 1, assigned by the caller
    now_ns: int  # i64: the ingest wall clock the request was judged at; replay reuses it
    tenant: str  # at most 65535 utf-8 bytes
    request_hash: bytes  # exactly 16 bytes
    payload: bytes  # the raw request bytes
    flags: int = 0  # u8: the admission decisions

    def __post_init__(self) -> None:
        if not 0 < self.seq < 2**64:
            raise ValueError(f"seq must be in 1..2**64-1, not {self.seq}")
        if not -(2**63) <= self.now_ns < 2**63:
            raise ValueError(f"now_ns must fit in an i64, not {self.now_ns}")
        if not 0 <= self.flags < 2**8:
            raise ValueError(f"flags must fit in a u8, not {self.flags}")
        if len(self.request_hash) != 16:
            raise ValueError(f"request_hash must be 16 bytes, not {len(self.request_hash)}")
        tenant_bytes = len(self.tenant.encode())
        if tenant_bytes >= 2**16:
            raise ValueError(f"tenant must be at most 65535 utf-8 bytes, not {tenant_bytes}")
        if _BODY_HEAD.size + tenant_bytes + len(self.payload) >= 2**32:
            raise ValueError(f"payload of {len(self.payload)} bytes does not fit in a record")


@dataclass(frozen=True, slots=True)
class _Damage:
    start: int
    end: int
    tail: bool  # no valid record follows


def _frame_at(
    view: memoryview, pos: int, magic: int, min_length: int = 0
) -> tuple[int, int] | None:
    """The body's start and end of the valid ``magic`` frame (record or padding) at ``pos``:
    magic, a body of at least ``min_length`` within the file, its CRC; or None."""
    body = pos + _RECORD_HEAD.size
    if body > len(view):
        return None
    found, length, crc = _RECORD_HEAD.unpack_from(view, pos)
    end: int = body + length
    if found != magic or length < min_length or end > len(view):
        return None
    if zlib.crc32(view[body:end]) != crc:
        return None
    return body, end


def _padding_end(view: memoryview, pos: int) -> int | None:
    """The offset after the valid padding record at ``pos``, or None."""
    frame = _frame_at(view, pos, PAD_MAGIC)
    return None if frame is None else frame[1]


def _decode_at(view: memoryview, pos: int) -> tuple[SpoolRecord, int] | None:
    """The valid record at ``pos`` and the offset after it, or None."""
    frame = _frame_at(view, pos, RECORD_MAGIC, _BODY_HEAD.size)
    if frame is None:
        return None
    body, end = frame
    seq, now_ns, flags, tenant_len, request_hash = _BODY_HEAD.unpack_from(view, body)
    tenant_end = body + _BODY_HEAD.size + tenant_len
    if tenant_end > end:
        return None
    try:
        tenant = bytes(view[body + _BODY_HEAD.size : tenant_end]).decode()
        record = SpoolRecord(seq, now_ns, tenant, request_hash, bytes(view[tenant_end:end]), flags)
    except ValueError:  # a body with a good CRC that breaks the format: seq 0, bad utf-8
        return None
    return record, end


def _scan(data: bytes) -> Iterator[SpoolRecord | _Damage]:
    """The records and damaged regions of a segment's bytes, after its header; padding
    records are neither."""
    view = memoryview(data)
    pos = len(FILE_HEADER)
    while pos < len(data):
        found = _decode_at(view, pos)
        if found is not None:
            record, pos = found
            yield record
            continue
        padding_end = _padding_end(view, pos)
        if padding_end is not None:
            pos = padding_end
            continue
        resume = data.find(_MAGIC_BYTES, pos + 1)
        while resume != -1 and _decode_at(view, resume) is None:
            resume = data.find(_MAGIC_BYTES, resume + 1)
        if resume == -1:
            yield _Damage(pos, len(data), tail=True)
            return
        yield _Damage(pos, resume, tail=False)
        pos = resume


def _replay(extents: list[tuple[Path, int]], skip: SeqSet | None) -> Iterator[SpoolRecord]:
    for path, size in extents:
        try:
            with path.open("rb") as file:
                data = file.read(size)
        except FileNotFoundError:
            continue  # released since records() was called
        for item in _scan(data):
            if isinstance(item, SpoolRecord) and (skip is None or item.seq not in skip):
                yield item
