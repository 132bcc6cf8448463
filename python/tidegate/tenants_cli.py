"""``tidegate tenants``: create, list and revoke API keys in the database a daemon uses.

Running daemons see a change within a second (the keys' table notifies them), so a revoked key
stops working without a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from tidegate import api_keys, schema
from tidegate.config import Config, load
from tidegate.database import reading_connection
from tidegate.errors import ConfigError, StorageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def add_parser(commands: Any) -> None:
    """Register ``tenants add``, ``tenants list`` and ``tenants revoke``."""
    tenants = commands.add_parser(
        "tenants",
        help="manage tenants' API keys",
        description="Create, list and revoke the API keys that decide a request's tenant.",
    )
    actions = tenants.add_subparsers(dest="tenants_command", metavar="{add,list,revoke}")
    add = actions.add_parser("add", help="create an API key for a tenant (shown once)")
    add.add_argument("name", help="tenant name: a-z, 0-9, '_' and '-', at most 63 characters")
    actions.add_parser("list", help="every key: tenant, key id, created, revoked")
    revoke = actions.add_parser("revoke", help="revoke a key, or every key of a tenant")
    revoke.add_argument("key_id", nargs="?", help="the 12 hex digits after 'tg_'")
    revoke.add_argument("--tenant", help="revoke every key of this tenant instead")
    # On each action only: argparse lets a subcommand's defaults overwrite its parent's values.
    for parser in actions.choices.values():
        parser.add_argument("--config", help="TOML configuration file (storage.dsn)")
        parser.add_argument(
            "--dsn", help="PostgreSQL DSN of the daemon's database (default: the embedded one)"
        )
        parser.add_argument("--data-dir", help="data directory of the embedded PostgreSQL")


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``tenants`` command: 0 done, 2 usage error, 1 database failure or
    nothing to revoke."""
    command = getattr(args, "tenants_command", None)
    try:
        if command is None:
            raise ConfigError("tenants needs a command: add, list or revoke")
        action = _action(args, command)
        config = load(args.config, overrides={"storage.dsn": args.dsn, "data_dir": args.data_dir})
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        return asyncio.run(_with_connection(config, action))
    except asyncpg.ClientConfigurationError as exc:
        return _fail(f"invalid storage.dsn / --dsn: {exc}", EXIT_USAGE)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _fail(f"cannot use PostgreSQL: {exc}", EXIT_FAILURE)
    except StorageError as exc:
        return _fail(str(exc), EXIT_FAILURE)


Action = Callable[[asyncpg.Connection], Awaitable[int]]


def _action(args: argparse.Namespace, command: str) -> Action:
    """The command's database work, with its arguments checked before any connection."""
    if command == "add":
        tenant = api_keys.check_tenant(args.name)
        return lambda conn: _add(conn, tenant)
    if command == "list":
        return _list
    if (args.key_id is None) == (args.tenant is None):
        raise ConfigError("tenants revoke takes a KEY_ID or --tenant NAME (one of the two)")
    if args.key_id is not None and not api_keys.KEY_ID_FORMAT.fullmatch(args.key_id):
        raise ConfigError(f"invalid key id {args.key_id!r}: expected 12 hex digits")
    if args.tenant is not None:
        api_keys.check_tenant(args.tenant)
    return lambda conn: _revoke(conn, args.key_id, args.tenant)


async def _with_connection(config: Config, action: Action) -> int:
    # Without a DSN this is the embedded PostgreSQL of the data directory, started (or joined,
    # while the daemon runs) for the command.
    async with reading_connection(config) as conn:
        # The daemon migrates at start; doing it here too lets keys exist before its first run.
        await schema.apply(conn)
        return await action(conn)


async def _add(conn: asyncpg.Connection, tenant: str) -> int:
    key_id, key = await api_keys.create_key(conn, tenant)
    print(f"created API key {key_id} for tenant {tenant}:")
    print(key)
    print("Store it now: it cannot be shown again (only its SHA-256 is kept).")
    return EXIT_OK


async def _list(conn: asyncpg.Connection) -> int:
    rows = [("TENANT", "KEY ID", "CREATED", "REVOKED")]
    for key in await api_keys.list_keys(conn):
        revoked = _time(key.revoked_at) if key.revoked_at is not None else "-"
        rows.append((key.tenant, key.key_id, _time(key.created_at), revoked))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*padded, row[3]]))
    return EXIT_OK


async def _revoke(conn: asyncpg.Connection, key_id: str | None, tenant: str | None) -> int:
    revoked = await api_keys.revoke(conn, key_id=key_id, tenant=tenant)
    if revoked == 0:
        if key_id is not None:
            return _fail(f"no active API key {key_id}: unknown or already revoked", EXIT_FAILURE)
        return _fail(f"tenant {tenant} has no active API key", EXIT_FAILURE)
    what = f"API key {key_id}" if key_id is not None else f"tenant {tenant}"
    print(f"revoked {revoked} key{'s' if revoked != 1 else ''} of {what}")
    return EXIT_OK


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _fail(message: str, code: int) -> int:
    print(f"tidegate tenants: {message}", file=sys.stderr)
    return code
