"""``tidegate config``: read, change and follow the live settings (docs/live-config.md).

Exit codes: 0 done; 2 a usage error or an invalid key or value (validated before anything is
written, so nothing was); 1 the source could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from prometheus_client import CollectorRegistry

from tidegate.config import Config, load
from tidegate.errors import ConfigError
from tidegate.live import (
    LiveSettings,
    LiveSnapshot,
    LiveSource,
    LiveSourceError,
    Value,
    format_value,
    open_source,
    parse_value,
)
from tidegate.live.settings import spec_for

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_USAGE = 2


def add_parser(commands: Any) -> None:
    """Register ``config`` and its subcommands on the ``tidegate`` subparsers object."""
    config = commands.add_parser(
        "config",
        help="read and change live settings",
        description="Live settings take effect in running daemons without a restart.",
    )
    actions = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    get = actions.add_parser("get", help="print the stored value of one key")
    get.add_argument("key")
    change = actions.add_parser("set", help="validate and store a value")
    change.add_argument("key")
    change.add_argument("value")
    unset = actions.add_parser("unset", help="remove a key: its default applies again")
    unset.add_argument("key")
    actions.add_parser("list", help="print every key that is set, as key = value")
    watch = actions.add_parser("watch", help="print each change as it happens")
    watch.add_argument("--count", type=int, help="exit after this many changes")
    for command in (get, change, unset, actions.choices["list"], watch):
        command.add_argument("--config", help="TOML configuration file (live.source and its store)")
        command.add_argument("--dsn", help="PostgreSQL DSN, for live.source = postgres")


def run(args: argparse.Namespace) -> int:
    """Run one ``tidegate config`` subcommand; returns the exit code."""
    try:
        config = load(args.config, overrides={"storage.dsn": args.dsn})
        source = _source(config, args)
        if args.config_command in {"get", "unset"}:
            spec_for(args.key)
        if args.config_command == "set":
            parse_value(args.key, args.value)
        if args.config_command == "watch" and args.count is not None and args.count < 1:
            raise ConfigError("--count must be at least 1")
        return asyncio.run(_COMMANDS[args.config_command](source, config, args))
    except ConfigError as exc:
        print(f"tidegate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LiveSourceError as exc:
        print(f"tidegate: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return EXIT_OK


def _source(config: Config, args: argparse.Namespace) -> LiveSource:
    live = config.live
    if live.source == "postgres" and not config.storage.dsn:
        raise ConfigError(
            "live.source is postgres and storage.dsn is empty (the daemon's embedded "
            "PostgreSQL): pass --dsn postgresql://... for the database the daemons use"
        )
    if live.source == "file":
        if args.config is None:
            raise ConfigError(
                "live.source is file (the default): pass --config FILE to read its "
                "[live.settings] table, or a config file whose live.source is postgres or redis"
            )
        if args.config_command == "watch":
            raise ConfigError(
                "live.source is file: daemons re-read it on SIGHUP only, there is nothing to watch"
            )
    return open_source(config, config_file=args.config)


async def _get(source: LiveSource, config: Config, args: argparse.Namespace) -> int:
    value = await source.read(args.key)
    if value is None:
        print(f"tidegate: {args.key} is not set; its default applies", file=sys.stderr)
    else:
        print(_shown(value))
    return EXIT_OK


async def _set(source: LiveSource, config: Config, args: argparse.Namespace) -> int:
    await source.set(args.key, args.value.strip())
    return EXIT_OK


async def _unset(source: LiveSource, config: Config, args: argparse.Namespace) -> int:
    await source.unset(args.key)
    return EXIT_OK


async def _list(source: LiveSource, config: Config, args: argparse.Namespace) -> int:
    for key, value in sorted((await source.read_all()).items()):
        try:
            parse_value(key, value)
        except ConfigError as exc:
            print(f"tidegate: daemons ignore this value: {exc}", file=sys.stderr)
        print(f"{key} = {_shown(value)}")
    return EXIT_OK


async def _watch(source: LiveSource, config: Config, args: argparse.Namespace) -> int:
    """Follow the values daemons would put in force (invalid ones are reported, not shown)."""
    settings = LiveSettings(config, CollectorRegistry(), source=source)
    printed = 0
    done = asyncio.Event()
    before: dict[str, Value] = {}

    def show(snapshot: LiveSnapshot) -> None:
        nonlocal printed, before
        for key in sorted(snapshot.values.keys() | before.keys()):
            if done.is_set() or snapshot.values.get(key) == before.get(key):
                continue
            if key in snapshot.values:
                print(f"{key} = {format_value(snapshot.values[key])}", flush=True)
            else:
                print(f"{key} unset", flush=True)
            printed += 1
            if args.count is not None and printed >= args.count:
                done.set()
        before = dict(snapshot.values)

    await settings.start()
    try:
        if not settings.source_up:
            raise LiveSourceError(f"cannot reach the {source.name} source")
        before = dict(settings.snapshot.values)
        settings.subscribe(show)
        print(f"watching the {source.name} source; Ctrl-C to stop", file=sys.stderr, flush=True)
        await done.wait()
    finally:
        await settings.stop()
    return EXIT_OK


def _shown(value: object) -> str:
    return value if isinstance(value, str) else format_value(value)


_COMMANDS = {"get": _get, "set": _set, "unset": _unset, "list": _list, "watch": _watch}
