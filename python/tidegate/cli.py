"""The ``tidegate`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

# The daemon forks while gRPC threads run: to start and stop embedded PostgreSQL as its own
# system user (``subprocess`` with ``user=`` cannot use vfork). gRPC's fork handlers restart
# its threads in the child before the exec, and a forked child of the test suite died of
# SIGSEGV there now and then. Every fork of the daemon is followed by exec, so the handlers
# are off; grpc reads the setting when it is imported, so before anything imports it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from tidegate import __version__, config_cli, query_cli, sd_notify, tenants_cli, trace_cli
from tidegate.allocator import keep_freed_memory
from tidegate.config import Config, load
from tidegate.daemon import Daemon
from tidegate.errors import ConfigError, QueryError, SpoolError, StorageError
from tidegate.object_store import ObjectStoreError
from tidegate.traces import CorruptBlockError, TraceNotFoundError

log = logging.getLogger("tidegate")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "query":
        return _query(args)
    if args.command == "trace":
        return _read(args, trace_cli.run_trace)
    if args.command == "traces":
        return _read(args, trace_cli.run_search)
    if args.command == "config":
        return config_cli.run(args)
    if args.command == "tenants":
        return tenants_cli.run(args)
    parser.print_help()
    return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidegate", description="OpenTelemetry ingest daemon")
    parser.add_argument("--version", action="version", version=f"tidegate {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", help="TOML configuration file")
    serve.add_argument("--dsn", help="PostgreSQL DSN (default: embedded PostgreSQL)")
    serve.add_argument("--data-dir", help="data directory (default ./tidegate-data)")
    serve.add_argument("--grpc-listen", help="OTLP/gRPC host:port (default 127.0.0.1:4317)")
    serve.add_argument("--http-listen", help="metrics/health host:port (default 127.0.0.1:9464)")
    serve.add_argument("--log-level", help="debug, info, warning or error")
    query_cli.add_parser(commands)
    trace_cli.add_parsers(commands)
    config_cli.add_parser(commands)
    tenants_cli.add_parser(commands)
    return parser


def _read(args: argparse.Namespace, run: Callable[[argparse.Namespace, Config], str]) -> int:
    """Runs a reading command: usage errors exit 2, missing data and storage failures 1."""
    try:
        config = load(args.config, overrides={"storage.dsn": args.dsn, "data_dir": args.data_dir})
        sys.stdout.write(run(args, config))
    except (ConfigError, QueryError) as exc:
        print(f"tidegate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StorageError, TraceNotFoundError, CorruptBlockError, ObjectStoreError) as exc:
        print(f"tidegate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _query(args: argparse.Namespace) -> int:
    return _read(args, query_cli.run)


def _serve(args: argparse.Namespace) -> int:
    try:
        config = load(
            args.config,
            overrides={
                "storage.dsn": args.dsn,
                "data_dir": args.data_dir,
                "grpc.listen": args.grpc_listen,
                "http.listen": args.http_listen,
                "log_level": args.log_level,
            },
        )
    except ConfigError as exc:
        print(f"tidegate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kept = keep_freed_memory()
    log.info("malloc: %s", ", ".join(kept) or "left as the environment or C library sets it")
    try:
        return asyncio.run(_run(config, args.config))
    except (StorageError, SpoolError) as exc:
        log.error("%s", exc)
        return EXIT_FAILURE


async def _run(config: Config, config_file: str | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    daemon = Daemon(config, config_file)
    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:
        log.info("SIGHUP: reading the live settings again")
        task = loop.create_task(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    await daemon.start()
    # Only once started: a SIGHUP before that keeps its default meaning (stop).
    loop.add_signal_handler(signal.SIGHUP, reload)
    sd_notify.notify(
        f"READY=1\nSTATUS=OTLP/gRPC on port {daemon.grpc_port}, HTTP on port {daemon.http_port}"
    )
    watchdog = _start_watchdog(daemon)
    stopped = asyncio.create_task(stop.wait())
    failed = asyncio.create_task(daemon.failed.wait())
    await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()
    if watchdog is not None:
        watchdog.cancel()
    # systemd stops the watchdog once told, so a long drain is not killed as a hang.
    sd_notify.notify("STOPPING=1\nSTATUS=stopping: flushing what was accepted")
    log.info("shutting down: no new requests; flushing what was accepted")
    await daemon.stop()
    if daemon.failure is not None:
        log.error("stopped because %s", daemon.failure)
        return EXIT_FAILURE
    dropped = sum(
        sample.value
        for metric in daemon.telemetry.points_dropped.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
    if dropped:
        log.error("%d accepted points could not be stored", int(dropped))
        return EXIT_FAILURE
    return EXIT_OK


def _start_watchdog(daemon: Daemon) -> asyncio.Task[None] | None:
    interval = sd_notify.watchdog_interval()
    if interval is None:
        return None
    # Daemon has no public readiness accessor; `_ready` is what /readyz answers from.
    return asyncio.create_task(
        sd_notify.run_watchdog(interval, lambda: daemon._ready and not daemon.failed.is_set()),
        name="tidegate-sd-watchdog",
    )


if __name__ == "__main__":
    sys.exit(main())
