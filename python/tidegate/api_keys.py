"""API keys: which tenant a request writes to (docs/architecture.md, "Tenants").

A key reads ``tg_<key id>_<secret>``: the key id (12 hex digits) is public and finds the key's
row; only the SHA-256 of the whole key is stored. Each daemon keeps every key in memory
(``ApiKeys``), so authenticating a request costs one hash and no database round trip, and
``watch`` keeps that copy current through LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from tidegate.config import DEFAULT_TENANT, TENANT_NAME
from tidegate.database import rows_affected
from tidegate.errors import AuthenticationError, TenantNameError

log = logging.getLogger(__name__)

INITIAL_BACKOFF_SECONDS = 0.1  # then doubled per failed attempt, up to max_backoff_seconds
CHANNEL = "tidegate_api_keys"  # notified by the table's trigger on every change
KEY_ID_BYTES = 6  # 12 hex digits: an id, not a secret
SECRET_BYTES = 32
KEY_FORMAT = re.compile(r"tg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
KEY_ID_FORMAT = re.compile(r"[0-9a-f]{12}")

MISSING = "missing API key: send 'authorization: Bearer <key>'"
MALFORMED = "invalid API key: send 'authorization: Bearer tg_<key id>_<secret>'"
INVALID = "invalid API key"
# Compared against when the key id is unknown, so that an unknown id takes as long as a wrong
# secret and timing does not reveal which ids exist.
_NO_SUCH_KEY = hashlib.sha256(b"no such key").digest()


def check_tenant(tenant: str) -> str:
    """Return ``tenant`` if it is a valid tenant name, else raise TenantNameError."""
    if not TENANT_NAME.fullmatch(tenant):
        raise TenantNameError(
            f"invalid tenant name {tenant!r}: use 1 to 63 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return tenant


def new_key() -> tuple[str, str]:
    """A fresh (key id, key)."""
    key_id = secrets.token_hex(KEY_ID_BYTES)
    return key_id, f"tg_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def key_hash(key: str) -> bytes:
    """What is stored of a key: the SHA-256 of all of it."""
    return hashlib.sha256(key.encode("ascii")).digest()


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One key as the directory holds it."""

    key_id: str
    tenant: str
    key_sha256: bytes
    revoked: bool


class ApiKeys:
    """Every API key (revoked ones too, to say so), by key id; answers which tenant a request
    belongs to."""

    def __init__(self, keys: Iterable[StoredKey] = ()) -> None:
        self._keys = {key.key_id: key for key in keys}
        self.loaded_at: float | None = None  # time.monotonic() of the last load

    def __len__(self) -> int:
        return len(self._keys)

    async def load(self, conn: asyncpg.Connection) -> None:
        """Replace the keys held with those in the database."""
        rows = await conn.fetch(
            "SELECT key_id, tenant, key_sha256, revoked_at IS NOT NULL AS revoked "
            "FROM tidegate_api_keys"
        )
        # One assignment: a request being authenticated sees the old set or the new one.
        self._keys = {
            r["key_id"]: StoredKey(r["key_id"], r["tenant"], bytes(r["key_sha256"]), r["revoked"])
            for r in rows
        }
        self.loaded_at = time.monotonic()

    def authenticate(
        self, metadata: Iterable[tuple[str, str | bytes]] | None, *, required: bool
    ) -> str:
        """The tenant of a gRPC call, from its invocation metadata's ``authorization`` entry.

        Without a key: DEFAULT_TENANT, or AuthenticationError when keys are ``required``. A
        key that is presented is always checked; a bad one raises AuthenticationError.
        """
        for name, value in metadata or ():
            if name.lower() == "authorization":
                if isinstance(value, bytes):
                    try:
                        value = value.decode("ascii")
                    except UnicodeDecodeError:
                        raise AuthenticationError(MALFORMED) from None
                return self.authenticate_header(value, required=required)
        return self.authenticate_header(None, required=required)

    def authenticate_header(self, value: str | None, *, required: bool) -> str:
        """The tenant of an HTTP request, from its ``Authorization`` header (None if absent)."""
        if value is None or not value.strip():
            if required:
                raise AuthenticationError(MISSING)
            return DEFAULT_TENANT
        scheme, _, key = value.strip().partition(" ")
        match = KEY_FORMAT.fullmatch(key.strip())
        if scheme.lower() != "bearer" or match is None:
            raise AuthenticationError(MALFORMED)
        stored = self._keys.get(match[1])
        # The hash and the comparison run whether or not the id exists (constant work).
        expected = stored.key_sha256 if stored is not None else _NO_SUCH_KEY
        matches = hmac.compare_digest(key_hash(match[0]), expected)
        if stored is None or not matches:
            raise AuthenticationError(INVALID)
        if stored.revoked:
            raise AuthenticationError(f"API key {stored.key_id} was revoked")
        return stored.tenant


@dataclass(frozen=True)
class KeyRow:
    """A key as ``tidegate tenants list`` shows it: never its hash."""

    key_id: str
    tenant: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


async def create_key(conn: asyncpg.Connection, tenant: str) -> tuple[str, str]:
    """Create a key for ``tenant``; return (key id, key). The key is not stored: show it once."""
    check_tenant(tenant)
    for _ in range(3):  # a key id collision (1 in 2^48 per existing key) gets a new key
        key_id, key = new_key()
        status = await conn.execute(
            "INSERT INTO tidegate_api_keys (key_id, tenant, key_sha256) VALUES ($1, $2, $3) "
            "ON CONFLICT (key_id) DO NOTHING",
            key_id,
            tenant,
            key_hash(key),
        )
        if status == "INSERT 0 1":
            return key_id, key
    raise RuntimeError("could not find an unused API key id")


async def list_keys(conn: asyncpg.Connection) -> list[KeyRow]:
    """Every key, by tenant then creation time."""
    rows = await conn.fetch(
        "SELECT key_id, tenant, created_at, revoked_at FROM tidegate_api_keys "
        "ORDER BY tenant, created_at, key_id"
    )
    return [KeyRow(r["key_id"], r["tenant"], r["created_at"], r["revoked_at"]) for r in rows]


async def revoke(
    conn: asyncpg.Connection, key_id: str | None = None, tenant: str | None = None
) -> int:
    """Revoke one key, or every key of a tenant (exactly one of the two); return how many
    keys were revoked now (keys revoked before are not counted)."""
    if (key_id is None) == (tenant is None):
        raise ValueError("revoke takes a key id or a tenant, not both and not neither")
    if key_id is not None:
        status = await conn.execute(
            "UPDATE tidegate_api_keys SET revoked_at = now() "
            "WHERE key_id = $1 AND revoked_at IS NULL",
            key_id,
        )
    else:
        status = await conn.execute(
            "UPDATE tidegate_api_keys SET revoked_at = now() "
            "WHERE tenant = $1 AND revoked_at IS NULL",
            tenant,
        )
    return rows_affected(status)


async def watch(
    directory: ApiKeys,
    dsn: str,
    *,
    refresh_seconds: float = 60.0,
    connect_timeout_seconds: float = 10.0,
    max_backoff_seconds: float = 30.0,
) -> None:
    """Keep ``directory`` current until cancelled: reload on every notification of the keys'
    channel (a revocation takes effect within milliseconds), and every ``refresh_seconds`` in
    case one was missed; a lost connection is reopened with backoff, then reloaded. It never
    ends on an error: watch ``directory.loaded_at`` to tell how current the keys are."""
    backoff = INITIAL_BACKOFF_SECONDS
    while True:
        loaded_at = directory.loaded_at
        try:
            conn = await asyncpg.connect(dsn, timeout=connect_timeout_seconds)
            try:
                await _follow(directory, conn, refresh_seconds)
            finally:
                conn.terminate()
            log.warning("API keys: lost the connection to PostgreSQL; reconnecting")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("API keys: cannot reload from PostgreSQL (%s); retrying", exc)
        # A watcher that died would leave revoked keys working until a restart, so even an
        # unexpected error is only logged and retried.
        except Exception:
            log.exception("API keys: unexpected error while reloading; retrying")
        if directory.loaded_at != loaded_at:
            backoff = INITIAL_BACKOFF_SECONDS  # this connection worked: a new outage starts short
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff_seconds)


async def _follow(directory: ApiKeys, conn: asyncpg.Connection, refresh_seconds: float) -> None:
    """Reload on notifications and periodically; return when the connection is closed."""
    changed = asyncio.Event()
    closed = asyncio.Event()

    def on_close(_conn: asyncpg.Connection) -> None:
        closed.set()
        changed.set()

    conn.add_termination_listener(on_close)
    await conn.add_listener(CHANNEL, lambda *_args: changed.set())
    # Loaded after LISTEN: a change committed in between is both loaded and notified.
    await directory.load(conn)
    while True:
        with contextlib.suppress(TimeoutError):  # the periodic reload
            await asyncio.wait_for(changed.wait(), refresh_seconds)
        if closed.is_set():
            return
        changed.clear()  # before loading: a change during the load gets another one
        await directory.load(conn)
