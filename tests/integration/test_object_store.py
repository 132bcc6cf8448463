"""Block storage against both backends: a directory on disk and S3 (moto) over real HTTP.

Every behavioural test runs once per backend through the ``harness`` fixture, so the two
implementations are held to the same contract.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.integration.moto_s3 import REGION, running_moto_server
from tests.ports import free_port
from tidegate.object_store import (
    BlockNotFound,
    FileStore,
    ObjectStore,
    ObjectStoreError,
    S3Store,
    open_store,
)

pytestmark = pytest.mark.timeout(90)

T = TypeVar("T")

#: Upper bound for one store operation; a hang fails the test instead of stalling the run.
OPERATION_TIMEOUT_SECONDS = 30.0
S3_PREFIX = "tg/test"


@dataclass
class Harness:
    """A started store, the event loop it lives on, and a backdoor listing of what is stored."""

    store: ObjectStore
    runner: asyncio.Runner
    # Every stored object's name as the backend holds it (file paths relative to the root,
    # or full S3 keys), read without going through the store.
    raw_names: Callable[[], list[str]]
    # What the backend puts in front of a key (the S3 store's prefix).
    layout_prefix: str

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(asyncio.wait_for(coro, OPERATION_TIMEOUT_SECONDS))


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with running_moto_server() as endpoint:
        yield endpoint


def _boto3_client(endpoint: str) -> Any:
    # Imported here: only the S3 backend needs it.
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION)


@pytest.fixture(params=["file", "s3"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with asyncio.Runner() as runner:
        if request.param == "file":
            root = tmp_path / "store"
            store: ObjectStore = runner.run(FileStore.open(root))

            def raw_names() -> list[str]:
                return sorted(
                    p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                )

            try:
                yield Harness(store, runner, raw_names, layout_prefix="")
            finally:
                runner.run(store.close())
            return

        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = f"tidegate-{uuid.uuid4().hex[:12]}"
        client = _boto3_client(endpoint)
        try:
            client.create_bucket(Bucket=bucket)
            # Credentials and region come from the environment (the default chain).
            store = runner.run(S3Store.open(bucket, S3_PREFIX, endpoint_url=endpoint))

            def raw_names() -> list[str]:
                names: list[str] = []
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                    names.extend(item["Key"] for item in page.get("Contents", []))
                return sorted(names)

            try:
                yield Harness(store, runner, raw_names, layout_prefix=f"{S3_PREFIX}/")
            finally:
                runner.run(store.close())
        finally:
            client.close()


def block_key(day: str, hour: str, name: str) -> str:
    return f"blocks/{day}/{hour}/{name}.tgb"


def test_both_backends_implement_the_protocol(harness: Harness) -> None:
    assert isinstance(harness.store, ObjectStore)
    assert harness.store.url.startswith(("file:///", "s3://"))


def test_put_then_get_and_ranges_return_exactly_those_bytes(harness: Harness) -> None:
    data = bytes(range(256)) * 1000 + b"tail"
    key = block_key("2025/01/31", "23", "ab12")
    harness.run(harness.store.put(key, data))

    assert harness.run(harness.store.get(key)) == data
    slices = [
        (0, 1),
        (0, len(data)),
        (1, 255),
        (4096, 65536),
        (123_457, 1000),
        (len(data) - 4, 4),
        (len(data) - 1, 1),
    ]
    for offset, length in slices:
        got = harness.run(harness.store.get_range(key, offset, length))
        assert got == data[offset : offset + length], (offset, length)
        assert len(got) == length


def test_putting_a_key_twice_leaves_one_object_with_the_second_content(harness: Harness) -> None:
    key = block_key("2025/01/31", "23", "cafe")
    harness.run(harness.store.put(key, b"first version, longer than the second"))
    harness.run(harness.store.put(key, b"second"))

    assert harness.run(harness.store.get(key)) == b"second"
    assert harness.run(harness.store.get_range(key, 1, 4)) == b"econ"
    # One object under the key, and no temporary files left behind by the writes.
    assert harness.raw_names() == [harness.layout_prefix + key]


def test_empty_object_round_trips(harness: Harness) -> None:
    key = block_key("2025/01/31", "23", "empty")
    harness.run(harness.store.put(key, b""))
    assert harness.run(harness.store.get(key)) == b""


def test_missing_key_is_block_not_found_naming_the_key(harness: Harness) -> None:
    key = block_key("2025/01/31", "23", "missing")
    harness.run(harness.store.put(block_key("2025/01/31", "23", "present"), b"x"))
    operations: list[Callable[[], Coroutine[Any, Any, bytes]]] = [
        lambda: harness.store.get(key),
        lambda: harness.store.get_range(key, 0, 1),
    ]
    for operation in operations:
        with pytest.raises(BlockNotFound) as caught:
            harness.run(operation())
        assert key in str(caught.value)
        assert harness.store.url in str(caught.value)
        assert caught.value.key == key
        assert caught.value.url == harness.store.url
    # A "directory" part of an existing key is not an object either.
    with pytest.raises(BlockNotFound):
        harness.run(harness.store.get("blocks/2025/01/31"))


@pytest.mark.parametrize(
    ("offset", "length"),
    [(90, 20), (99, 2), (100, 1), (1000, 10)],
    ids=["overlapping-end", "one-past", "at-end", "far-past"],
)
def test_range_past_the_end_is_a_truncated_error(
    harness: Harness, offset: int, length: int
) -> None:
    key = block_key("2025/01/31", "23", "short")
    harness.run(harness.store.put(key, bytes(100)))
    with pytest.raises(ObjectStoreError, match="truncated") as caught:
        harness.run(harness.store.get_range(key, offset, length))
    assert not isinstance(caught.value, BlockNotFound)
    assert key in str(caught.value)
    assert harness.store.url in str(caught.value)


def test_invalid_ranges_are_rejected_before_any_io(harness: Harness) -> None:
    key = block_key("2025/01/31", "23", "x")
    with pytest.raises(ValueError, match="offset=-1"):
        harness.run(harness.store.get_range(key, -1, 5))
    with pytest.raises(ValueError, match="length=0"):
        harness.run(harness.store.get_range(key, 0, 0))


def test_delete_prefix_removes_exactly_the_objects_under_it(harness: Harness) -> None:
    keys = {
        "day1-a": block_key("2025/01/01", "00", "a1"),
        "day1-b": block_key("2025/01/01", "00", "b1"),
        "day1-c": block_key("2025/01/01", "13", "c1"),
        "day2": block_key("2025/01/02", "00", "d2"),
        "day10": block_key("2025/01/10", "05", "e10"),
        "feb": block_key("2025/02/01", "00", "f"),
        "other": "other/blocks/2025/01/01/x.tgb",
    }
    for name, key in keys.items():
        harness.run(harness.store.put(key, name.encode()))

    assert harness.run(harness.store.delete_prefix("blocks/2025/01/01/")) == 3
    remaining = sorted(keys[n] for n in ("day2", "day10", "feb", "other"))
    assert harness.raw_names() == [harness.layout_prefix + k for k in remaining]
    with pytest.raises(BlockNotFound):
        harness.run(harness.store.get(keys["day1-a"]))

    # A plain string prefix, as in S3: ".../01/0" matches day 02 but not day 10.
    assert harness.run(harness.store.delete_prefix("blocks/2025/01/0")) == 1
    assert harness.run(harness.store.get(keys["day10"])) == b"day10"

    assert harness.run(harness.store.delete_prefix("blocks/2025/01/01/")) == 0
    assert harness.run(harness.store.delete_prefix("nothing/here/")) == 0
    remaining = sorted(keys[n] for n in ("day10", "feb", "other"))
    assert harness.raw_names() == [harness.layout_prefix + k for k in remaining]


def test_delete_prefix_handles_more_than_one_batch(harness: Harness) -> None:
    count = 1003  # more than one ListObjectsV2 page and one DeleteObjects request
    keys = [block_key("2024/12/31", f"{i % 24:02d}", f"{i:06x}") for i in range(count)]
    keep = block_key("2025/01/01", "00", "keep")

    async def put_all() -> None:
        limit = asyncio.Semaphore(16)

        async def put(key: str) -> None:
            async with limit:
                await harness.store.put(key, b"x")

        await asyncio.gather(*(put(k) for k in [*keys, keep]))

    harness.runner.run(asyncio.wait_for(put_all(), 60))
    assert harness.run(harness.store.delete_prefix("blocks/2024/")) == count
    assert harness.raw_names() == [harness.layout_prefix + keep]


def test_list_prefixes_walks_the_date_hierarchy(harness: Harness) -> None:
    for day, hour in [
        ("2024/12/31", "23"),
        ("2025/01/01", "00"),
        ("2025/01/01", "07"),
        ("2025/01/02", "00"),
        ("2025/02/03", "11"),
    ]:
        harness.run(harness.store.put(block_key(day, hour, "b"), b"x"))
    harness.run(harness.store.put("top-level-object", b"x"))

    def prefixes(prefix: str) -> list[str]:
        return harness.run(harness.store.list_prefixes(prefix))

    assert prefixes("") == ["blocks/"]
    assert prefixes("blocks/") == ["blocks/2024/", "blocks/2025/"]
    assert prefixes("blocks/2025/") == ["blocks/2025/01/", "blocks/2025/02/"]
    assert prefixes("blocks/2025/01/") == ["blocks/2025/01/01/", "blocks/2025/01/02/"]
    assert prefixes("blocks/2025/01/0") == ["blocks/2025/01/01/", "blocks/2025/01/02/"]
    assert prefixes("blocks/2025/01/01/") == ["blocks/2025/01/01/00/", "blocks/2025/01/01/07/"]
    assert prefixes("blocks/2025/01/01/00/") == []  # objects only, no deeper prefixes
    assert prefixes("blocks/1999/") == []

    harness.run(harness.store.delete_prefix("blocks/2025/01/01/"))
    assert prefixes("blocks/2025/01/") == ["blocks/2025/01/02/"]
    harness.run(harness.store.delete_prefix("blocks/2025/01/"))
    assert prefixes("blocks/2025/") == ["blocks/2025/02/"]


@pytest.mark.parametrize(
    "key",
    ["../x", "blocks/../../x", "/etc/passwd", "a\\b", "", "a//b", "a/./b", ".hidden", "a/"],
)
def test_invalid_keys_are_rejected(harness: Harness, key: str) -> None:
    with pytest.raises(ObjectStoreError, match="invalid object key") as caught:
        harness.run(harness.store.put(key, b"x"))
    assert harness.store.url in str(caught.value)
    with pytest.raises(ObjectStoreError, match="invalid object key"):
        harness.run(harness.store.get(key))
    assert harness.raw_names() == []


def test_invalid_prefixes_are_rejected(harness: Harness) -> None:
    for prefix in ("../", "blocks/../", "/blocks/"):
        with pytest.raises(ObjectStoreError, match="invalid object prefix"):
            harness.run(harness.store.delete_prefix(prefix))
        with pytest.raises(ObjectStoreError, match="invalid object prefix"):
            harness.run(harness.store.list_prefixes(prefix))


def test_readers_never_see_a_partial_object(harness: Harness) -> None:
    key = block_key("2025/01/31", "23", "hot")
    versions = [bytes([i]) * (1 << 20) for i in range(1, 3)]
    harness.run(harness.store.put(key, versions[0]))

    async def race() -> set[bytes]:
        seen: set[bytes] = set()

        async def write() -> None:
            for i in range(10):
                await harness.store.put(key, versions[i % 2])

        async def read() -> None:
            for _ in range(20):
                seen.add(await harness.store.get(key))

        await asyncio.gather(write(), read())
        return seen

    seen = harness.run(race())
    assert seen <= set(versions)


def test_file_store_keeps_keys_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with asyncio.Runner() as runner:
        store = runner.run(FileStore.open(root))
        runner.run(store.put("blocks/2025/01/31/23/ok.tgb", b"data"))
        for key in ("../x", "../root/blocks/2025/01/31/23/ok.tgb", "blocks/../../escape"):
            with pytest.raises(ObjectStoreError, match=re.escape(repr(key))):
                runner.run(store.put(key, b"x"))
            with pytest.raises(ObjectStoreError, match="invalid object key"):
                runner.run(store.get_range(key, 0, 1))
    assert (root / "blocks/2025/01/31/23/ok.tgb").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_file_store_removes_leftover_temporary_files_without_counting_them(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    day = root / "blocks/2025/01/31/23"
    day.mkdir(parents=True)
    (day / ".abc.tgb.0123.tmp").write_bytes(b"interrupted write")
    with asyncio.Runner() as runner:
        store = runner.run(FileStore.open(root))
        # A directory holding only a temporary file holds no object.
        assert runner.run(store.list_prefixes("blocks/2025/01/")) == []
        assert runner.run(store.delete_prefix("blocks/2025/")) == 0
    assert list(root.iterdir()) == []


def test_s3_store_rejects_use_after_close(moto_endpoint: str) -> None:
    with asyncio.Runner() as runner:
        store = runner.run(S3Store.open("never-used", endpoint_url=moto_endpoint))
        runner.run(store.close())
        runner.run(store.close())  # closing twice is harmless
        with pytest.raises(RuntimeError, match="not started"):
            runner.run(store.get("blocks/x"))


GOOD_URLS = [
    ("file:///{tmp}/blocks", FileStore, "file:///{tmp}/blocks"),
    ("file://localhost/{tmp}/blocks/", FileStore, "file:///{tmp}/blocks"),
    ("file:///{tmp}/with%20space", FileStore, "file:///{tmp}/with%20space"),
    ("s3://bucket", S3Store, "s3://bucket"),
    ("s3://bucket/", S3Store, "s3://bucket"),
    ("s3://my-bucket/some/prefix/", S3Store, "s3://my-bucket/some/prefix"),
]


@pytest.mark.parametrize(("url", "kind", "expected"), GOOD_URLS)
def test_open_store_accepts(
    tmp_path: Path, url: str, kind: type[ObjectStore], expected: str
) -> None:
    tmp = tmp_path.as_posix().lstrip("/")
    with asyncio.Runner() as runner:
        # Explicit credentials: nothing may go looking for them on the network.
        store = runner.run(
            open_store(
                url.format(tmp=tmp),
                region=REGION,
                access_key_id="testing",
                secret_access_key="testing",
            )
        )
        try:
            assert isinstance(store, kind)
            assert store.url == expected.format(tmp=tmp)
            if isinstance(store, FileStore):
                assert store.root.is_dir()
            if isinstance(store, S3Store):
                assert store.bucket == url.split("/")[2]
                assert store.prefix == "/".join(url.split("/")[3:]).strip("/")
        finally:
            runner.run(store.close())


BAD_URLS = [
    ("", "unsupported object store URL"),
    ("relative/path", "unsupported object store URL"),
    ("/absolute/path", "unsupported object store URL"),
    ("file://relative/path", "absolute path"),
    ("file:relative", "absolute path"),
    ("file:///tmp/x?mode=1", "query"),
    ("http://example.com/blocks", "unsupported object store URL"),
    ("gs://bucket/prefix", "unsupported object store URL"),
    ("s3://", "needs a bucket"),
    ("s3:///prefix", "needs a bucket"),
    ("s3://bucket:9000/prefix", "names only the bucket"),
    ("s3://bucket/a/../b", "invalid object store prefix"),
    ("s3://bucket/a//b", "invalid object store prefix"),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_open_store_rejects(url: str, message: str) -> None:
    with pytest.raises(ObjectStoreError, match=re.escape(message)):
        asyncio.run(asyncio.wait_for(open_store(url), OPERATION_TIMEOUT_SECONDS))


def test_open_store_never_echoes_credentials_in_a_url() -> None:
    with pytest.raises(ObjectStoreError) as caught:
        asyncio.run(open_store("s3://AKIDEXAMPLE:hunter2@bucket/prefix"))
    assert "hunter2" not in str(caught.value)
    assert "AKIDEXAMPLE" not in str(caught.value)


def _fail_fast_store(endpoint: str) -> S3Store:
    return S3Store(
        "some-bucket",
        "p",
        endpoint_url=endpoint,
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        connect_timeout=1.0,
        read_timeout=1.0,
        max_attempts=2,
    )


def _assert_fails_fast(endpoint: str) -> None:
    key = block_key("2025/01/31", "23", "x")
    store = _fail_fast_store(endpoint)
    operations: list[tuple[str, Callable[[], Coroutine[Any, Any, object]]]] = [
        (key, lambda: store.put(key, b"x")),
        (key, lambda: store.get_range(key, 0, 1)),
        ("blocks/", lambda: store.list_prefixes("blocks/")),
    ]
    with asyncio.Runner() as runner:
        runner.run(store.start())
        try:
            for name, operation in operations:
                started = time.monotonic()
                with pytest.raises(ObjectStoreError) as caught:
                    runner.run(asyncio.wait_for(operation(), 20))
                assert time.monotonic() - started < 10, name
                assert "s3://some-bucket/p" in str(caught.value)
                assert repr(name) in str(caught.value)
                assert caught.value.__cause__ is not None
                assert not isinstance(caught.value, BlockNotFound)
        finally:
            runner.run(store.close())


def test_unreachable_s3_endpoint_fails_fast_naming_the_store() -> None:
    # Nothing listens on this port: every connection attempt is refused.
    _assert_fails_fast(f"http://127.0.0.1:{free_port()}")


def test_silent_s3_endpoint_times_out_naming_the_store() -> None:
    # Connections are accepted by the kernel but no byte ever comes back: a read timeout.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        _assert_fails_fast(f"http://127.0.0.1:{listener.getsockname()[1]}")


def test_stalled_upload_hits_the_operation_deadline() -> None:
    # The server accepts the connection but never reads: once the socket buffers are full
    # the upload makes no progress, which no socket timeout notices.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    store = S3Store(
        "some-bucket",
        endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        read_timeout=60.0,
        max_attempts=1,
        operation_timeout=2.0,
    )
    key = block_key("2025/01/31", "23", "big")
    with asyncio.Runner() as runner:
        runner.run(store.start())
        try:
            started = time.monotonic()
            with pytest.raises(
                ObjectStoreError, match=re.escape("no answer within 2.0 s")
            ) as caught:
                runner.run(asyncio.wait_for(store.put(key, bytes(64 << 20)), 20))
            assert time.monotonic() - started < 10
            assert "s3://some-bucket" in str(caught.value)
            assert repr(key) in str(caught.value)
        finally:
            # asyncio closes a transport only once its unsent data is out, which never
            # happens here: closing the listener resets the connection so it can go.
            listener.close()
            runner.run(asyncio.sleep(0.2))
            runner.run(store.close())
