"""The Daemon owns startup and shutdown of every part, in order.

Startup: database (embedded or DSN, migrated), the trace store, the spools (recovered), the
HTTP endpoint, the writers with the spool records they had not committed replayed into the
cores, retention, then the gRPC listener last, so nothing is accepted before it can be stored.
A failure part-way tears down what already started. Shutdown runs the other way: refuse new
requests, let in-flight ones finish, drain every accepted point and span, close the spools,
then the store and the database. A spool that cannot be written stops the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
import grpc

from tidegate import api_keys, checkpoints, tls
from tidegate._core import (
    CoreLimits,
    MetricsCore,
    RollupSettings,
    TraceCore,
    TraceSettings,
)
from tidegate.api_keys import ApiKeys
from tidegate.config import Config, parse_listen
from tidegate.daemon_wiring import LiveApplier, make_signals, report_active_series
from tidegate.database import Database, open_database
from tidegate.grpc_auth import AuthInterceptor
from tidegate.http_server import HttpServer, TraceApi
from tidegate.intake import Intake, spool_id
from tidegate.live import LiveSettings
from tidegate.metrics_writer import MetricsWriter
from tidegate.object_store import ObjectStore
from tidegate.ratelimit import TenantLimiter
from tidegate.receiver import METRICS_SERVICE, TRACE_SERVICE, Receiver
from tidegate.replay import catch_up, replay_metrics_rollups, replay_uncommitted
from tidegate.retention import Retention
from tidegate.spool import Spool
from tidegate.telemetry import Telemetry
from tidegate.trace_writer import TraceWriter, delete_orphan_blocks
from tidegate.traces import open_trace_store

log = logging.getLogger(__name__)

NS_PER_SECOND = 1_000_000_000


class Daemon:
    """One running tidegate: ``await start()``, then ``await stop()``."""

    def __init__(self, config: Config, config_file: str | None = None) -> None:
        """``config_file``: the TOML file ``config`` was loaded from, which the file source of
        live settings re-reads on ``reload`` (SIGHUP)."""
        self.config = config
        self._config_file = config_file
        self.telemetry = Telemetry()
        ingest = config.ingest
        self.core = MetricsCore(
            CoreLimits(
                max_attributes=ingest.max_attributes,
                max_attribute_value_bytes=ingest.max_attribute_value_bytes,
                max_name_bytes=ingest.max_name_bytes,
                max_past_ns=ingest.max_past_seconds * NS_PER_SECOND,
                max_future_ns=ingest.max_future_seconds * NS_PER_SECOND,
            ),
            RollupSettings(
                window_seconds=config.rollups.window_seconds,
                lateness_seconds=config.rollups.lateness_seconds,
                compression=config.rollups.compression,
            ),
        )
        traces = config.traces
        self.trace_core = TraceCore(
            TraceSettings(
                block_max_bytes=traces.block_max_bytes,
                block_max_age_seconds=traces.block_max_age_seconds,
                zstd_level=traces.zstd_level,
                dictionary_bytes=traces.dictionary_bytes,
            )
        )
        # Which tenant a request belongs to, kept current from `tidegate_api_keys`.
        self.api_keys = ApiKeys()
        self.limiter = TenantLimiter()
        self.live: LiveSettings | None = None
        self.database: Database | None = None
        self.store: ObjectStore | None = None
        self.writer: MetricsWriter | None = None
        self.trace_writer: TraceWriter | None = None
        self.grpc_port = 0
        self.http_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._receiver: Receiver | None = None
        self._http: HttpServer | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self.intakes: dict[str, Intake] = {}
        self._ready = False
        self._teardown = contextlib.AsyncExitStack()
        # Set when a part fails in a way the daemon must not run on (the spool cannot write).
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None

    @property
    def dsn(self) -> str:
        assert self.database is not None, "the daemon has not started"
        return self.database.dsn

    async def start(self) -> None:
        try:
            await self._start_parts()
        except BaseException:
            await self._teardown.aclose()
            raise
        self._ready = True
        log.info(
            "tidegate ready: OTLP/gRPC on port %d, HTTP on port %d", self.grpc_port, self.http_port
        )

    async def stop(self) -> None:
        """Stop accepting, flush everything accepted, release every resource."""
        self._ready = False
        await self._teardown.aclose()
        log.info("tidegate stopped")

    async def _start_parts(self) -> None:
        stack = self._teardown
        config = self.config
        self.database = await open_database(config)
        stack.push_async_callback(self.database.close)
        self.store = store = await open_trace_store(config)
        stack.push_async_callback(store.close)
        await self._open_intakes()
        spool = spool_id(config.spool_directory())
        conn = await asyncpg.connect(
            self.database.dsn, timeout=config.storage.connect_timeout_seconds
        )
        try:
            metrics_checkpoint = await checkpoints.load(conn, spool, "metrics")
            traces_checkpoint = await checkpoints.load(conn, spool, "traces")
            accepted = await checkpoints.load_accepted(conn, config.spool.dedup_horizon_seconds)
            await self.api_keys.load(conn)
            if self.intakes["traces"].durable:
                await delete_orphan_blocks(conn, store)
        finally:
            await conn.close()
        for intake, checkpoint in (
            (self.intakes["metrics"], metrics_checkpoint),
            (self.intakes["traces"], traces_checkpoint),
        ):
            intake.committed = checkpoint.committed.copy()
            for a in accepted:
                intake.recent.add(a, a.now_ns)
        # Readers (the HTTP trace API) get connections of their own.
        readers = await asyncpg.create_pool(self.database.dsn, min_size=0, max_size=4)
        stack.push_async_callback(readers.close)

        # Before the writers, so that it stops after the drain: the drain's outcome stays
        # scrapeable until the very end.
        self._http = HttpServer(
            config.http.listen,
            self.telemetry,
            lambda: self._ready,
            TraceApi(readers, store, self._authenticate_http),
        )
        await self._http.start()
        self.http_port = self._http.port
        stack.push_async_callback(self._http.stop)

        metrics_intake = self.intakes["metrics"]
        # Open windows and hours first, before any new batch can move the checkpoint.
        await asyncio.to_thread(
            replay_metrics_rollups, self.core, metrics_intake, metrics_checkpoint, self.telemetry
        )
        writer = MetricsWriter(
            config,
            self.database.dsn,
            self.core,
            self.telemetry,
            metrics_intake,
            spool,
            metrics_checkpoint,
        )
        self.writer = writer
        stack.push_async_callback(writer.close)
        self._writer_task = asyncio.create_task(writer.run(), name="tidegate-metrics-writer")
        stack.push_async_callback(self._stop_writer)
        await asyncio.to_thread(
            replay_uncommitted,
            "metrics",
            self.core,
            metrics_intake,
            writer.queue_full,
            self.telemetry,
        )
        self.core.start_seqs_at(metrics_intake.next_seq_floor())

        traces_intake = self.intakes["traces"]
        trace_writer = TraceWriter(
            config, self.database.dsn, self.trace_core, store, self.telemetry, traces_intake, spool
        )
        self.trace_writer = trace_writer
        stack.push_async_callback(trace_writer.close)
        self._start_task(trace_writer.run(), "tidegate-trace-writer", trace_writer.stop)
        await asyncio.to_thread(
            replay_uncommitted,
            "traces",
            self.trace_core,
            traces_intake,
            trace_writer.queue_full,
            self.telemetry,
        )
        self.trace_core.start_seqs_at(traces_intake.next_seq_floor())

        retention = Retention(config, self.database.dsn, store, self.telemetry)
        self._start_task(retention.run(), "tidegate-retention", retention.stop)

        # Before the listener: the first request already meets the live limits.
        self.live = live = LiveSettings(
            config,
            self.telemetry.registry,
            config_file=self._config_file,
            dsn=self.database.dsn,
        )
        await live.start()
        stack.push_async_callback(live.stop)
        apply = LiveApplier(self.core, self.trace_core, self.limiter, retention)
        apply(live.snapshot)
        live.subscribe(apply)

        self._start_cancellable(
            api_keys.watch(
                self.api_keys,
                self.database.dsn,
                refresh_seconds=config.live.refresh_seconds,
                connect_timeout_seconds=config.storage.connect_timeout_seconds,
            ),
            "tidegate-api-keys",
        )
        self._start_cancellable(
            report_active_series(self.core, self.telemetry.active_series),
            "tidegate-active-series",
        )
        signals = make_signals(
            self.core, self.trace_core, writer, trace_writer, self.intakes, self.telemetry
        )
        for signal in signals:
            if signal.intake.durable:
                stop_catching_up = asyncio.Event()
                core = self.core if signal.name == "metrics" else self.trace_core
                self._start_task(
                    catch_up(signal.name, core, signal.intake, signal.queue_full, stop_catching_up),
                    f"tidegate-{signal.name}-catch-up",
                    stop_catching_up.set,
                )
        self._receiver = Receiver(config, self.telemetry, signals, self._authenticate, self.limiter)
        stack.push_async_callback(self._receiver.close)
        self._grpc = self._make_grpc_server(self._receiver)
        host, port = parse_listen("grpc.listen", self.config.grpc.listen)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 literal
        credentials = tls.server_credentials(config.grpc)
        if credentials is None:
            self.grpc_port = self._grpc.add_insecure_port(address)
        else:
            self.grpc_port = self._grpc.add_secure_port(address, credentials)
        await self._grpc.start()
        stack.push_async_callback(self._stop_grpc)

    async def reload(self) -> None:
        """Re-read the live settings now (SIGHUP)."""
        if self.live is not None:
            await self.live.reload()

    def _authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        return self.api_keys.authenticate(metadata, required=self.config.auth.required)

    def _authenticate_http(self, authorization: str | None) -> str:
        return self.api_keys.authenticate_header(authorization, required=self.config.auth.required)

    async def _open_intakes(self) -> None:
        """One spool per signal (none in memory mode), recovered; a spool that cannot be
        written from now on stops the daemon."""
        config = self.config
        loop = asyncio.get_running_loop()
        for signal in ("metrics", "traces"):
            spool: Spool | None = None
            if config.spool.durability == "fsync":
                spool = await asyncio.to_thread(
                    Spool,
                    config.spool_directory() / signal,
                    segment_bytes=config.spool.segment_bytes,
                )
                report = spool.recovery
                damage = self.telemetry.spool_damage.labels
                damage(signal, "corrupt_record").inc(report.corrupt_records)
                damage(signal, "torn_tail_byte").inc(report.torn_tail_bytes)
                log.info(
                    "%s spool: %d records in %d segments (%d bytes) recovered",
                    signal,
                    report.records,
                    report.segments,
                    report.bytes,
                )
                spool.add_fatal_listener(self._fail_from_thread(loop))
            intake = Intake(signal, spool, config.spool.dedup_horizon_seconds)
            # Read at every scrape.
            self.telemetry.spool_bytes.labels(signal).set_function(intake.spool_size)
            self.telemetry.spool_records.labels(signal).set_function(intake.spool_count)
            self.intakes[signal] = intake
            self._teardown.push_async_callback(intake.close)

    def _fail_from_thread(self, loop: asyncio.AbstractEventLoop) -> Callable[[BaseException], None]:
        def on_fatal(exc: BaseException) -> None:  # called on the spool's writer thread
            loop.call_soon_threadsafe(self._fail, exc)

        return on_fatal

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            log.critical("stopping: %s", exc)
            self.failure = exc
            self._ready = False
            if self._receiver is not None:
                self._receiver.stop_intake()
            self.failed.set()

    def _start_task(self, coro: Any, name: str, stop: Callable[[], None]) -> None:
        task = asyncio.create_task(coro, name=name)

        async def stop_and_wait() -> None:
            stop()
            await task

        self._teardown.push_async_callback(stop_and_wait)

    def _start_cancellable(self, coro: Any, name: str) -> None:
        """A task that runs until the daemon stops (it is cancelled then)."""
        task = asyncio.create_task(coro, name=name)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self._teardown.push_async_callback(cancel)

    def _make_grpc_server(self, receiver: Receiver) -> grpc.aio.Server:
        limit = self.config.grpc.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
            # The receiver answers over-limit calls with RetryInfo; this is the hard stop.
            maximum_concurrent_rpcs=4 * self.config.grpc.max_concurrent_rpcs,
            interceptors=[
                AuthInterceptor(
                    self._authenticate,
                    {f"/{METRICS_SERVICE}/Export": "metrics", f"/{TRACE_SERVICE}/Export": "traces"},
                    self.telemetry,
                )
            ],
        )
        server.add_generic_rpc_handlers(tuple(receiver.handlers()))
        return server

    async def _stop_grpc(self) -> None:
        if self._receiver is not None:
            # New calls get UNAVAILABLE with RetryInfo from the receiver (and back off), while
            # the calls in flight finish, before grpc stops taking calls at all.
            self._receiver.stop_intake()
            await asyncio.sleep(self._receiver.shutdown_notice_seconds)
        if self._grpc is not None:
            await self._grpc.stop(self.config.grpc.shutdown_grace_seconds)
            self._grpc = None

    async def _stop_writer(self) -> None:
        if self.writer is not None and self._writer_task is not None:
            self.writer.stop()
            await self._writer_task
            self._writer_task = None
