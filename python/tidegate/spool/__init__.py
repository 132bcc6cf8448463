"""The durable spool: a write-ahead log of accepted OTLP Export requests.

Every accepted request is appended, and fsynced, before its client is answered. Sinks commit
to PostgreSQL with the spool position they cover (a ``SeqSet``); after a restart the records
not yet committed are replayed with ``Spool.records(skip=committed)``, and
``Spool.release(committed)`` deletes the segments every sink has committed. One ``Spool`` owns
one directory (an exclusive ``flock`` on ``<directory>/LOCK`` enforces it).

Sequence numbers are the caller's: unique, starting at 1, possibly out of order. After a
restart they must continue above ``recovery.max_seq``: every seq up to it counts as durable,
since one that is not on disk was either released or lost before it was acknowledged.

On-disk format. Segment files ``<number:016d>.seg``, numbered upwards from one more than the
highest existing number. A segment is the 8-byte header ``b"TGSPOOL1"`` then records, every
integer little-endian::

    record  = magic u32 (0x54475231) | body_length u32 | crc32 u32 (zlib.crc32 of body) | body
    body    = seq u64 | now_ns i64 | flags u8 | tenant_len u16 | request_hash (16 bytes)
              | tenant (utf-8, tenant_len bytes) | payload (the rest of the body)
    padding = magic u32 (0x54475030) | body_length u32 | crc32 u32 | body_length zero bytes

A writer thread takes every record queued (up to 4 MiB or 1,024 records) and hands them to
the core (``SpoolGroupWriter``), which lays them out in one buffer, writes it with one write
to a file opened ``O_APPEND`` and fsyncs once (group commit), all without the GIL; written
bytes are in the file even before their fsync. By default the file is also opened
``O_DIRECT`` (``tidegate.spool.direct_io``): the buffer is page-aligned and the group ends
with a padding record that takes the segment to the next multiple of 4096 bytes (to the one
after when the gap is under 12 bytes), and so does the header. Where the filesystem refuses
``O_DIRECT``, and with ``fsync=False``, the records go back to back through the page cache
with no padding. With ``fsync=False`` nothing is fsynced and a record is durable once
written. A segment ends after the group that takes it past ``segment_bytes``; the next one's
header and directory entry are fsynced before it is used. Appends go only to a segment this
process created, never after a recovered tail. ``release()`` deletes a sealed segment once
all its valid records are committed, so an empty one goes at the first call. A segment's
size, and so the spool's, counts its padding: up to 4 KiB a group, which matters only for
groups of small requests.

Recovery, on open. A record is valid when its magic, length (within the file), CRC and body
check; a padding record is valid when its magic, length and CRC check, and is skipped. From
an invalid position the scan looks for the next valid record:

- found: the bytes between are one corrupt region, counted, logged at WARNING with the file
  name and offset, and never replayed;
- not found, in the last segment: a torn tail (a write cut short by a crash), truncated off
  and fsynced;
- not found, in an earlier segment: counted and logged as corrupt, left in place.

A segment with a wrong header counts as one corrupt region of its whole size and is ignored
from then on: never replayed, never released (an operator removes it). An empty segment (no
bytes, or the header only) is fine; in the last segment a header cut short is a torn tail.
Damaged content never makes opening fail; an I/O error does (SpoolError).
"""

from tidegate.spool.records import (
    FILE_HEADER,
    RECORD_MAGIC,
    SpoolClosedError,
    SpoolError,
    SpoolFatalError,
    SpoolRecord,
)
from tidegate.spool.segments import RecoveryReport
from tidegate.spool.seqset import SeqSet
from tidegate.spool.writer import Spool

__all__ = [
    "FILE_HEADER",
    "RECORD_MAGIC",
    "RecoveryReport",
    "SeqSet",
    "Spool",
    "SpoolClosedError",
    "SpoolError",
    "SpoolFatalError",
    "SpoolRecord",
]
