"""Where trace blocks live: a local directory or an S3-compatible bucket.

A block is an immutable object of up to a few MiB that readers fetch piecewise with ranged
reads. Block keys are derived from their content, so storing the same key twice stores the
same bytes: ``put`` simply overwrites and needs no conditional write. Keys are ``/``-separated
paths such as ``blocks/2025/01/31/23/<hex>.tgb``; the date/hour directories let retention
drop a whole day with one ``delete_prefix`` and walk the days with ``list_prefixes``.

Two implementations share the :class:`ObjectStore` protocol:

* :class:`FileStore` (``file:///absolute/path``) keeps each object in a file under a root
  directory. All file I/O runs in worker threads so the event loop never blocks on the disk.
* :class:`S3Store` (``s3://bucket/optional/prefix``) talks to AWS S3, MinIO or any other
  S3-compatible service through one long-lived aioboto3 client.

:func:`open_store` turns a store URL from the configuration into a ready store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from tidegate.errors import TidegateError

#: Largest number of keys one S3 ``DeleteObjects`` request accepts.
DELETE_BATCH_SIZE = 1000

# S3 error codes that mean "this key does not exist" (GET answers NoSuchKey; some
# S3-compatible servers answer with the bare status instead).
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


class ObjectStoreError(TidegateError):
    """An object store operation failed; the message names the store URL and the key.

    ``url`` and ``key`` (or the prefix, for prefix operations) are kept as attributes so
    callers can report or retry without parsing the message.
    """

    def __init__(self, message: str, *, url: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.key = key


class BlockNotFound(ObjectStoreError):  # noqa: N818 - the name reads as the condition it reports
    """The requested object does not exist in the store."""


@runtime_checkable
class ObjectStore(Protocol):
    """An object store holding immutable blocks under ``/``-separated keys.

    Keys and prefixes are relative: no leading ``/``, no backslash, no empty, ``.`` or ``..``
    segment, and no segment starting with ``.`` (the file store keeps its temporary files
    under such names). Invalid keys raise :class:`ObjectStoreError` before any I/O.
    """

    @property
    def url(self) -> str:
        """The store's normalized URL (``file:///...`` or ``s3://...``), for messages and logs."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any previous object atomically.

        Readers see either the old object or the complete new one, never a partial write.
        """
        ...

    async def get(self, key: str) -> bytes:
        """The whole object; :class:`BlockNotFound` when it does not exist."""
        ...

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes of the object starting at byte ``offset``.

        Raises :class:`BlockNotFound` when the object does not exist and
        :class:`ObjectStoreError` ("truncated") when it ends before ``offset + length``.
        ``offset`` must be >= 0 and ``length`` > 0 (``ValueError`` otherwise).
        """
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; return how many were deleted.

        ``prefix`` is a plain string prefix as in S3: ``blocks/2025/01/0`` matches the keys
        of January 1st to 9th. An empty prefix matches every object in the store.
        """
        ...

    async def list_prefixes(self, prefix: str, delimiter: str = "/") -> list[str]:
        """The distinct key prefixes one level below ``prefix``, sorted (S3 CommonPrefixes).

        Each result is ``prefix`` plus the rest of some key up to and including the next
        ``delimiter``: ``list_prefixes("blocks/2025/01/")`` returns ``["blocks/2025/01/01/",
        "blocks/2025/01/02/", ...]``. Objects directly under ``prefix`` are not reported.
        """
        ...

    async def close(self) -> None:
        """Release connections and clients; the store is unusable afterwards."""
        ...


def _check_key(url: str, key: str) -> list[str]:
    """The segments of a valid object key; raises ObjectStoreError for any other key.

    The same rules apply to both stores so that a key accepted by one is accepted by the
    other, and so that no key can reach outside the file store's root directory.
    """
    if not key:
        raise ObjectStoreError(f"invalid object key {key!r} for {url}: empty", url=url, key=key)
    segments = key.split("/")
    _check_segments(url, key, segments, what="key")
    return segments


def _check_prefix(url: str, prefix: str) -> tuple[list[str], str]:
    """Split a valid key prefix into its complete directory segments and a trailing stem."""
    if not prefix:
        return [], ""
    *directories, stem = prefix.split("/")
    # The stem may be empty (prefix ends with "/") but otherwise follows the segment rules.
    _check_segments(url, prefix, directories + ([stem] if stem else []), what="prefix")
    return directories, stem


def _check_segments(url: str, key: str, segments: list[str], *, what: str) -> None:
    problem = None
    if "\\" in key:
        problem = "backslashes are not allowed"
    elif "\x00" in key:
        problem = "NUL characters are not allowed"
    elif key.startswith("/"):
        problem = "must be relative (no leading '/')"
    elif any(segment in ("", ".", "..") for segment in segments):
        problem = "empty, '.' and '..' path segments are not allowed"
    elif any(segment.startswith(".") for segment in segments):
        problem = "segments must not start with '.'"
    if problem is not None:
        raise ObjectStoreError(
            f"invalid object {what} {key!r} for {url}: {problem}", url=url, key=key
        )


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length <= 0:
        raise ValueError(
            f"invalid byte range: offset={offset} (must be >= 0), length={length} (> 0)"
        )


def _truncated(url: str, key: str, offset: int, length: int, detail: str) -> ObjectStoreError:
    return ObjectStoreError(
        f"truncated object {key!r} in {url}: wanted {length} bytes at offset {offset}, {detail}",
        url=url,
        key=key,
    )


# Temporary files are hidden (leading ".") so that no valid key can collide with one.
def _is_temporary(name: str) -> bool:
    return name.startswith(".")


class FileStore:
    """Objects as files under a root directory; key ``a/b/c`` is the file ``<root>/a/b/c``.

    Writes go to a hidden temporary file in the target directory, are fsynced and then
    renamed over the target, and the directory is fsynced, so a crash leaves either the old
    object or the complete new one. Directories left empty by :meth:`delete_prefix` are
    removed, so that :meth:`list_prefixes` matches what S3 would report.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """A store rooted at ``root`` (made absolute); no I/O happens until first use."""
        self.root = Path(os.path.abspath(root))
        self._url = self.root.as_uri()

    @classmethod
    async def open(cls, root: str | os.PathLike[str]) -> FileStore:
        """A store rooted at ``root``, creating the directory so that problems show at once."""
        store = cls(root)
        try:
            await asyncio.to_thread(store.root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise ObjectStoreError(
                f"cannot create object store directory for {store.url}: {exc}", url=store.url
            ) from exc
        return store

    @property
    def url(self) -> str:
        """``file:///...`` URL of the root directory."""
        return self._url

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    async def put(self, key: str, data: bytes) -> None:
        """Atomically replace the object at ``key`` with ``data`` (see the class docstring)."""
        path = self._path(key)
        try:
            await asyncio.to_thread(self._put_sync, path, data)
        except OSError as exc:
            raise ObjectStoreError(
                f"cannot write {key!r} to {self.url}: {exc}", url=self.url, key=key
            ) from exc

    async def get(self, key: str) -> bytes:
        """The whole object at ``key``."""
        path = self._path(key)
        with self._read_errors(key):
            return await asyncio.to_thread(path.read_bytes)

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset`` of the object at ``key``."""
        _check_range(offset, length)
        path = self._path(key)
        with self._read_errors(key):
            return await asyncio.to_thread(self._get_range_sync, path, key, offset, length)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete the objects whose keys start with ``prefix``; returns how many.

        Leftover temporary files of interrupted writes under the prefix are removed too but
        not counted.
        """
        directories, stem = _check_prefix(self.url, prefix)
        try:
            return await asyncio.to_thread(self._delete_prefix_sync, directories, stem)
        except OSError as exc:
            raise ObjectStoreError(
                f"cannot delete prefix {prefix!r} from {self.url}: {exc}", url=self.url, key=prefix
            ) from exc

    async def list_prefixes(self, prefix: str, delimiter: str = "/") -> list[str]:
        """Sorted common prefixes one level below ``prefix``; only ``/`` is supported."""
        if delimiter != "/":
            raise ValueError(f"FileStore supports only the '/' delimiter, not {delimiter!r}")
        directories, stem = _check_prefix(self.url, prefix)
        try:
            return await asyncio.to_thread(self._list_prefixes_sync, directories, stem)
        except OSError as exc:
            raise ObjectStoreError(
                f"cannot list prefix {prefix!r} in {self.url}: {exc}", url=self.url, key=prefix
            ) from exc

    async def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(self.url, key))

    @contextlib.contextmanager
    def _read_errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            # A directory, or a path through a file, is as absent as a missing file would be.
            raise BlockNotFound(
                f"block {key!r} not found in {self.url}", url=self.url, key=key
            ) from exc
        except OSError as exc:
            raise ObjectStoreError(
                f"cannot read {key!r} from {self.url}: {exc}", url=self.url, key=key
            ) from exc

    def _put_sync(self, path: Path, data: bytes) -> None:
        directory = path.parent
        # A concurrent delete_prefix may remove the (then empty) directory between creating it
        # and creating the temporary file in it; creating it again is enough.
        for attempt in range(3):
            self._make_directories(directory)
            temporary = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                continue
            break
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        # The rename is durable only once the directory entry is.
        _fsync_directory(directory)

    def _make_directories(self, directory: Path) -> None:
        if directory.is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        current = self.root
        for part in directory.relative_to(self.root).parts:
            parent, current = current, current / part
            try:
                current.mkdir()
            except FileExistsError:
                continue
            # A new directory survives a crash only once its parent's entry for it does.
            _fsync_directory(parent)

    def _get_range_sync(self, path: Path, key: str, offset: int, length: int) -> bytes:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            if offset + length > size:
                raise _truncated(self.url, key, offset, length, f"but the object has {size} bytes")
            file.seek(offset)
            data = file.read(length)
        if len(data) != length:
            raise _truncated(self.url, key, offset, length, f"read only {len(data)}")
        return data

    def _delete_prefix_sync(self, directories: list[str], stem: str) -> int:
        directory = self.root.joinpath(*directories)
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return 0
        deleted = 0
        for entry in entries:
            if not entry.name.startswith(stem):
                continue
            if entry.is_dir(follow_symlinks=False):
                deleted += _delete_tree(entry.path)
            elif _unlink(entry.path) and not _is_temporary(entry.name):
                deleted += 1
        self._prune_empty_directories(directory)
        return deleted

    def _prune_empty_directories(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                return  # not empty (or not ours to remove): its ancestors are not empty either
            directory = directory.parent

    def _list_prefixes_sync(self, directories: list[str], stem: str) -> list[str]:
        directory = self.root.joinpath(*directories)
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        head = "".join(f"{part}/" for part in directories)
        # S3 has no directories, only keys: a directory without objects is not a prefix.
        return sorted(
            f"{head}{entry.name}/"
            for entry in entries
            if entry.name.startswith(stem)
            and not _is_temporary(entry.name)
            and entry.is_dir(follow_symlinks=False)
            and _contains_object(entry.path)
        )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> bool:
    """Remove a file; False when it was already gone (a concurrent delete)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _delete_tree(top: str) -> int:
    """Remove a directory tree; returns the number of objects (non-temporary files) removed."""
    deleted = 0
    for directory, subdirectories, files in os.walk(top, topdown=False):
        for name in files:
            if _unlink(os.path.join(directory, name)) and not _is_temporary(name):
                deleted += 1
        for name in subdirectories:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                _unlink(path)
        # A concurrent put may have just created a file here; leaving the directory is fine.
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    return deleted


def _contains_object(top: str) -> bool:
    for _directory, _subdirectories, files in os.walk(top):
        if any(not _is_temporary(name) for name in files):
            return True
    return False


class S3Store:
    """Objects in an S3-compatible bucket, under an optional key prefix.

    One aioboto3 client (and so one HTTP connection pool) serves the store's whole life:
    enter it with :meth:`start` (or construct with :meth:`open`) and release it with
    :meth:`close`. Credentials come from the arguments when both are given, otherwise from
    the default AWS credential chain (environment, shared files, instance roles).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        max_connections: int = 32,
        operation_timeout: float = 120.0,
    ) -> None:
        """Describe the store; no network I/O happens here or in :meth:`start`.

        Empty strings count as unset for the endpoint, region and credentials, as they do in
        configuration files.

        ``connect_timeout`` and ``read_timeout`` bound each socket wait, ``max_attempts`` is
        the number of tries per request (standard retry mode, with backoff), and
        ``operation_timeout`` bounds one request including its retries: a backstop for stalls
        that no socket timeout notices, such as a server that stops reading an upload.
        """
        endpoint_url = endpoint_url or None
        access_key_id = access_key_id or None
        secret_access_key = secret_access_key or None
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        if not bucket or "/" in bucket:
            raise ObjectStoreError(
                f"invalid S3 bucket name {bucket!r} for {self._url}", url=self._url
            )
        if self.prefix:
            # The same rules as for keys, so that prefix + key is always a valid key.
            _check_segments(self._url, self.prefix, self.prefix.split("/"), what="store prefix")
        if (access_key_id is None) != (secret_access_key is None):
            raise ObjectStoreError(
                f"S3 credentials for {self._url} need both an access key id and a secret "
                "access key",
                url=self._url,
            )
        # Every key below the store's prefix; "" when the store owns the whole bucket.
        self._base = f"{self.prefix}/" if self.prefix else ""
        self._region = region or None
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        config: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "retries": {"mode": "standard", "max_attempts": max_attempts},
            "max_pool_connections": max_connections,
            # Since botocore 1.36 every request carries a CRC checksum by default, which many
            # S3-compatible servers reject; send one only where the API demands it.
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
        if endpoint_url is not None:
            # Self-hosted stores (MinIO, moto, ...) rarely resolve bucket subdomains.
            config["s3"] = {"addressing_style": "path"}
        self._config = config
        self._operation_timeout = operation_timeout
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None

    @classmethod
    async def open(cls, bucket: str, prefix: str = "", **options: Any) -> S3Store:
        """Construct and :meth:`start` a store (same arguments as the constructor)."""
        store = cls(bucket, prefix, **options)
        await store.start()
        return store

    @property
    def url(self) -> str:
        """``s3://bucket`` or ``s3://bucket/prefix``."""
        return self._url

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Store({self.url!r}{endpoint})"

    async def start(self) -> None:
        """Create the long-lived S3 client; call once, from the event loop that will use it."""
        if self._stack is not None:
            raise RuntimeError(f"{self!r} is already started")
        # Imported here so that file-only deployments never pay for importing boto3.
        import aioboto3  # type: ignore[import-untyped]
        from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]

        stack = contextlib.AsyncExitStack()
        try:
            session = aioboto3.Session()
            client = await stack.enter_async_context(
                session.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self._region,
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret_access_key,
                    config=BotoConfig(**self._config),
                )
            )
            # botocore sends uploads with "Expect: 100-continue", and aiohttp waits for the
            # interim response with no timeout at all: a server that accepts the connection
            # but never answers would stall put() until the operation deadline. Blocks are
            # small enough that sending the body unasked costs nothing. botocore adds the
            # header in a "before-call.s3" handler, which runs after any operation-specific
            # one, so only a handler registered last at that level can remove it.
            client.meta.events.register_last("before-call.s3", _drop_expect_header)
        except (BotoCoreError, ClientError, ValueError) as exc:
            await stack.aclose()
            raise ObjectStoreError(
                f"cannot create an S3 client for {self.url}: {exc}", url=self.url
            ) from exc
        self._client = client
        self._stack = stack

    async def close(self) -> None:
        """Close the client and its connection pool; calling it again does nothing."""
        stack, self._stack = self._stack, None
        self._client = None
        if stack is not None:
            await stack.aclose()

    async def put(self, key: str, data: bytes) -> None:
        """Upload ``data`` to ``key`` with one PutObject (atomic by S3's semantics)."""
        client = self._require_client()
        full_key = self._full_key(key)
        with self._errors("put", key):
            async with self._deadline():
                await client.put_object(
                    Bucket=self.bucket,
                    Key=full_key,
                    Body=data,
                    ContentType="application/octet-stream",
                )

    async def get(self, key: str) -> bytes:
        """The whole object at ``key``."""
        client = self._require_client()
        full_key = self._full_key(key)
        with self._errors("get", key):
            async with self._deadline():
                response = await client.get_object(Bucket=self.bucket, Key=full_key)
                return await _read_body(response)

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``, fetched with one ranged GetObject."""
        _check_range(offset, length)
        client = self._require_client()
        full_key = self._full_key(key)
        with self._errors("get", key, offset=offset, length=length):
            async with self._deadline():
                response = await client.get_object(
                    Bucket=self.bucket,
                    Key=full_key,
                    Range=f"bytes={offset}-{offset + length - 1}",
                )
                data = await _read_body(response)
        if len(data) < length:
            raise _truncated(self.url, key, offset, length, f"got only {len(data)}")
        if len(data) > length:
            # A server that ignored the Range header: never hand out the wrong bytes.
            raise ObjectStoreError(
                f"ranged read of {key!r} from {self.url} returned {len(data)} bytes instead of "
                f"{length}: the server does not honour Range requests",
                url=self.url,
                key=key,
            )
        return data

    async def delete_prefix(self, prefix: str) -> int:
        """Delete the objects whose keys start with ``prefix`` in batches of 1000."""
        _check_prefix(self.url, prefix)
        client = self._require_client()
        deleted = 0
        with self._errors("delete prefix", prefix):
            # A listed page holds at most 1000 keys, one DeleteObjects request's worth.
            # Deleting while paginating is safe: the continuation token is a position in
            # the key order, not an offset.
            pages = self._list_pages(
                Prefix=self._base + prefix, PaginationConfig={"PageSize": DELETE_BATCH_SIZE}
            )
            async with contextlib.aclosing(pages):
                async for page in pages:
                    keys = [item["Key"] for item in page.get("Contents", [])]
                    for start in range(0, len(keys), DELETE_BATCH_SIZE):
                        batch = keys[start : start + DELETE_BATCH_SIZE]
                        async with self._deadline():
                            response = await client.delete_objects(
                                Bucket=self.bucket,
                                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                            )
                        # Quiet mode reports only the failures.
                        errors = response.get("Errors", [])
                        if errors:
                            first = errors[0]
                            raise ObjectStoreError(
                                f"cannot delete {len(errors)} of {len(batch)} objects under "
                                f"{prefix!r} from {self.url}, e.g. {first.get('Key')!r}: "
                                f"{first.get('Code')}: {first.get('Message')}",
                                url=self.url,
                                key=prefix,
                            )
                        deleted += len(batch)
        return deleted

    async def list_prefixes(self, prefix: str, delimiter: str = "/") -> list[str]:
        """Sorted common prefixes one level below ``prefix`` (ListObjectsV2 with Delimiter)."""
        if not delimiter:
            raise ValueError("the delimiter must not be empty")
        _check_prefix(self.url, prefix)
        prefixes: list[str] = []
        with self._errors("list prefix", prefix):
            pages = self._list_pages(Prefix=self._base + prefix, Delimiter=delimiter)
            async with contextlib.aclosing(pages):
                async for page in pages:
                    for common in page.get("CommonPrefixes", []):
                        full: str = common["Prefix"]
                        prefixes.append(full[len(self._base) :])
        return sorted(prefixes)

    async def _list_pages(self, **arguments: Any) -> AsyncGenerator[dict[str, Any], None]:
        """ListObjectsV2 pages of the bucket, each request under the operation deadline."""
        paginator = self._require_client().get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, **arguments).__aiter__()
        while True:
            async with self._deadline():
                try:
                    page: dict[str, Any] = await anext(pages)
                except StopAsyncIteration:
                    return
            yield page

    def _deadline(self) -> asyncio.Timeout:
        return asyncio.timeout(self._operation_timeout)

    def _require_client(self) -> Any:
        if self._client is None:
            raise RuntimeError(f"{self!r} is not started (or already closed)")
        return self._client

    def _full_key(self, key: str) -> str:
        _check_key(self.url, key)
        return self._base + key

    @contextlib.contextmanager
    def _errors(
        self, operation: str, key: str, *, offset: int = 0, length: int = 0
    ) -> Iterator[None]:
        """Translate botocore and transport errors into ObjectStoreError naming store and key."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _MISSING_KEY_CODES:
                raise BlockNotFound(
                    f"block {key!r} not found in {self.url}", url=self.url, key=key
                ) from exc
            if code == "InvalidRange" or status == 416:
                size = error.get("ActualObjectSize")
                detail = f"but the object has {size} bytes" if size else "beyond the object's end"
                raise _truncated(self.url, key, offset, length, detail) from exc
            if code == "NoSuchBucket":
                raise ObjectStoreError(
                    f"{operation} {key!r} failed: bucket {self.bucket!r} of {self.url} "
                    "does not exist",
                    url=self.url,
                    key=key,
                ) from exc
            raise ObjectStoreError(
                f"{operation} {key!r} in {self.url} failed: {exc}", url=self.url, key=key
            ) from exc
        except (BotoCoreError, aiohttp.ClientError) as exc:
            # Connection refused, DNS failure, socket timeouts, a response cut short: the
            # retries configured on the client are already exhausted when these arrive.
            raise ObjectStoreError(
                f"{operation} {key!r} in {self.url}{self._endpoint_note()} failed: "
                f"{type(exc).__name__}: {exc}",
                url=self.url,
                key=key,
            ) from exc
        except TimeoutError as exc:
            # Only the operation deadline gets here: botocore's timeouts are BotoCoreErrors,
            # and a caller's own timeout arrives as a cancellation, which passes through.
            raise ObjectStoreError(
                f"{operation} {key!r} in {self.url}{self._endpoint_note()} failed: no answer "
                f"within {self._operation_timeout} s",
                url=self.url,
                key=key,
            ) from exc

    def _endpoint_note(self) -> str:
        return f" (endpoint {self.endpoint_url})" if self.endpoint_url else ""


def _drop_expect_header(params: dict[str, Any], **_: Any) -> None:
    params["headers"].pop("Expect", None)


async def _read_body(response: Any) -> bytes:
    body = response["Body"]
    # Leaving the context returns the connection to the pool even if the read fails.
    async with body:
        data: bytes = await body.read()
    return data


async def open_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    max_attempts: int = 3,
    operation_timeout: float = 120.0,
) -> ObjectStore:
    """Open the store that ``url`` names: ``file:///absolute/path`` or ``s3://bucket[/prefix]``.

    The S3 options (endpoint, region, credentials, timeouts, attempts; see
    :class:`S3Store`) apply to ``s3://`` URLs only. A file store's directory is created if
    missing. Raises :class:`ObjectStoreError` for a malformed or unsupported URL.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _bad_url(url, str(exc)) from exc
    if parts.query or parts.fragment:
        raise _bad_url(url, "query strings and fragments are not allowed")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _bad_url(url, "a file URL needs an absolute path: file:///absolute/path")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise _bad_url(url, "a file URL needs an absolute path: file:///absolute/path")
        return await FileStore.open(path)
    if parts.scheme == "s3":
        if "@" in parts.netloc or ":" in parts.netloc:
            # Never echo the URL: it may hold a secret.
            raise ObjectStoreError(
                "unsupported object store URL: an s3:// URL names only the bucket and prefix; "
                "give credentials and the endpoint as separate settings"
            )
        if not parts.netloc:
            raise _bad_url(url, "an s3:// URL needs a bucket: s3://bucket[/prefix]")
        return await S3Store.open(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            operation_timeout=operation_timeout,
        )
    raise _bad_url(url, "expected file:///absolute/path or s3://bucket[/prefix]")


def _bad_url(url: str, reason: str) -> ObjectStoreError:
    return ObjectStoreError(f"unsupported object store URL {url!r}: {reason}", url=url)


__all__ = [
    "DELETE_BATCH_SIZE",
    "BlockNotFound",
    "FileStore",
    "ObjectStore",
    "ObjectStoreError",
    "S3Store",
    "open_store",
]
