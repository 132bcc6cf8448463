"""Raw access to stored trace blocks, independent of the index: list every block object in a
``file://`` or ``s3://`` store, split a block into its zstd frames, decode each frame's spans
without dropping repeats (the reading API drops repeated span ids, which would hide exactly
the duplicates a fault test looks for).

Frames are split by walking the zstd frame format (RFC 8878, section 3.1.1); decompression
uses the system's libzstd through ctypes, with the block's dictionary from ``trace_blocks``
when it has one. Without libzstd, frames are decoded with the core's ``read_trace_protobuf``,
which drops repeats within a frame (``RAW_DECODER`` says which).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from opentelemetry.proto.trace.v1 import trace_pb2

from tests.faults.daemon_process import S3Settings
from tidegate._core import read_trace_protobuf

ZSTD_MAGIC = 0xFD2FB528
CONTENT_SIZE_UNKNOWN = 2**64 - 1
CONTENT_SIZE_ERROR = 2**64 - 2
BLOCKS_PREFIX = "blocks/"


def _load_libzstd() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("zstd") or "libzstd.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
    lib.ZSTD_getFrameContentSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.ZSTD_decompress.restype = ctypes.c_size_t
    lib.ZSTD_decompress.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.ZSTD_isError.restype = ctypes.c_uint
    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
    lib.ZSTD_createDCtx.restype = ctypes.c_void_p
    lib.ZSTD_freeDCtx.argtypes = [ctypes.c_void_p]
    lib.ZSTD_decompress_usingDict.restype = ctypes.c_size_t
    lib.ZSTD_decompress_usingDict.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    return lib


_ZSTD = _load_libzstd()
RAW_DECODER = "libzstd" if _ZSTD is not None else "read_trace_protobuf (drops repeats in a frame)"


def frame_lengths(block: bytes) -> list[tuple[int, int]]:
    """(offset, length) of every zstd frame in ``block``, in order."""
    frames = []
    offset = 0
    while offset < len(block):
        length = _frame_length(block, offset)
        frames.append((offset, length))
        offset += length
    return frames


def _frame_length(data: bytes, start: int) -> int:
    magic = int.from_bytes(data[start : start + 4], "little")
    if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
        return 8 + int.from_bytes(data[start + 4 : start + 8], "little")
    if magic != ZSTD_MAGIC:
        raise ValueError(f"no zstd frame at offset {start}")
    descriptor = data[start + 4]
    single_segment = bool(descriptor & 0x20)
    content_size_bytes = {0: 1 if single_segment else 0, 1: 2, 2: 4, 3: 8}[descriptor >> 6]
    position = start + 5 + (0 if single_segment else 1)
    position += (0, 1, 2, 4)[descriptor & 0x03] + content_size_bytes
    while True:
        header = int.from_bytes(data[position : position + 3], "little")
        block_type = (header >> 1) & 0x03
        size = header >> 3
        position += 3 + (1 if block_type == 1 else size)
        if header & 1:
            break
    if descriptor & 0x04:
        position += 4  # content checksum
    if position > len(data):
        raise ValueError(f"zstd frame at offset {start} is truncated")
    return position - start


def decompress(frame: bytes, dictionary: bytes = b"") -> bytes:
    """One zstd frame, with a raw-content ``dictionary`` (uncompressed) when given."""
    assert _ZSTD is not None
    size = _ZSTD.ZSTD_getFrameContentSize(frame, len(frame))
    if size in (CONTENT_SIZE_UNKNOWN, CONTENT_SIZE_ERROR):
        raise ValueError("zstd frame without a content size")
    out = ctypes.create_string_buffer(max(1, size))
    context = _ZSTD.ZSTD_createDCtx()
    try:
        written = _ZSTD.ZSTD_decompress_usingDict(
            context, out, size, frame, len(frame), dictionary, len(dictionary)
        )
    finally:
        _ZSTD.ZSTD_freeDCtx(context)
    if _ZSTD.ZSTD_isError(written):
        raise ValueError("zstd frame does not decompress")
    return out.raw[:written]


def frame_spans(frame: bytes, dictionary: bytes = b"") -> list[trace_pb2.Span]:
    """Every span in one stored frame, repeats included (with libzstd); ``dictionary`` is
    its block's, as ``trace_blocks`` holds it (zstd-compressed; empty: none)."""
    if _ZSTD is not None:
        encoded = decompress(frame, decompress(dictionary) if dictionary else b"")
    else:
        encoded = read_trace_protobuf([(frame, dictionary)])
    data = trace_pb2.TracesData.FromString(encoded)
    return [span for rs in data.resource_spans for ss in rs.scope_spans for span in ss.spans]


@dataclass
class BlockStore:
    """A synchronous, read-only view of a trace store's block objects (keys as the index
    stores them, relative to the store's prefix)."""

    url: str
    s3: S3Settings | None = None

    def keys(self) -> list[str]:
        parts = urlsplit(self.url)
        if parts.scheme == "file":
            root = Path(unquote(parts.path))
            blocks = root / BLOCKS_PREFIX
            if not blocks.exists():
                return []
            found = []
            for directory, _, files in os.walk(blocks):
                for name in files:
                    path = Path(directory, name)
                    relative = path.relative_to(root)
                    if not any(part.startswith(".") for part in relative.parts):
                        found.append(relative.as_posix())
            return sorted(found)
        bucket, prefix = self._bucket_prefix()
        paginator = self._client().get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix + BLOCKS_PREFIX):
            found.extend(item["Key"][len(prefix) :] for item in page.get("Contents", []))
        return sorted(found)

    def read(self, key: str) -> bytes:
        parts = urlsplit(self.url)
        if parts.scheme == "file":
            return (Path(unquote(parts.path)) / key).read_bytes()
        bucket, prefix = self._bucket_prefix()
        body: bytes = self._client().get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
        return body

    def _bucket_prefix(self) -> tuple[str, str]:
        parts = urlsplit(self.url)
        prefix = unquote(parts.path).strip("/")
        return parts.netloc, f"{prefix}/" if prefix else ""

    def _client(self) -> Any:
        import boto3  # type: ignore[import-untyped]  # only s3:// stores need it

        assert self.s3 is not None, "an s3:// store needs S3 settings"
        return boto3.client(
            "s3",
            endpoint_url=self.s3.endpoint_url,
            region_name=self.s3.region,
            aws_access_key_id=self.s3.access_key_id,
            aws_secret_access_key=self.s3.secret_access_key,
        )
