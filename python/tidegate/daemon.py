"""The Daemon owns startup and shutdown of every part, in order.

Startup: database (embedded or DSN, migrated), the metrics writer, the HTTP endpoint, then the
gRPC listener last, so nothing is accepted before it can be stored. A failure part-way tears
down what already started. Shutdown runs the other way: stop accepting, let in-flight requests
finish, drain every accepted point into PostgreSQL, then close the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from tidegate._core import CoreLimits, MetricsCore, RollupSettings
from tidegate.config import Config, parse_listen
from tidegate.database import Database, open_database
from tidegate.http_server import HttpServer
from tidegate.metrics_writer import MetricsWriter
from tidegate.receiver import MetricsReceiver
from tidegate.telemetry import Telemetry

log = logging.getLogger(__name__)

NS_PER_SECOND = 1_000_000_000
# In-flight Export calls get this long to finish once shutdown starts.
GRPC_GRACE_SECONDS = 5.0


class Daemon:
    """One running tidegate: ``await start()``, then ``await stop()``."""

    def __init__(self, config: Config) -> None:
        self.config = config
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
        self.database: Database | None = None
        self.writer: MetricsWriter | None = None
        self.grpc_port = 0
        self.http_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._receiver: MetricsReceiver | None = None
        self._http: HttpServer | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._ready = False
        self._teardown = contextlib.AsyncExitStack()

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
        self.database = await open_database(self.config)
        stack.push_async_callback(self.database.close)

        # Before the writer, so that it stops after the drain: the drain's outcome stays
        # scrapeable until the very end.
        self._http = HttpServer(self.config.http.listen, self.telemetry, lambda: self._ready)
        await self._http.start()
        self.http_port = self._http.port
        stack.push_async_callback(self._http.stop)

        writer = MetricsWriter(self.config, self.database.dsn, self.core, self.telemetry)
        self.writer = writer
        stack.push_async_callback(writer.close)
        self._writer_task = asyncio.create_task(writer.run(), name="tidegate-metrics-writer")
        stack.push_async_callback(self._stop_writer)

        self._receiver = MetricsReceiver(
            self.config, self.core, self.telemetry, lambda: writer.unwritten_points, writer.poke
        )
        stack.push_async_callback(self._receiver.close)
        self._grpc = self._make_grpc_server(self._receiver)
        host, port = parse_listen("grpc.listen", self.config.grpc.listen)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 literal
        self.grpc_port = self._grpc.add_insecure_port(address)
        await self._grpc.start()
        stack.push_async_callback(self._stop_grpc)

    def _make_grpc_server(self, receiver: MetricsReceiver) -> grpc.aio.Server:
        limit = self.config.grpc.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
            # The receiver answers over-limit calls with RetryInfo; this is the hard stop.
            maximum_concurrent_rpcs=4 * self.config.grpc.max_concurrent_rpcs,
        )
        server.add_generic_rpc_handlers((receiver.handler(),))
        return server

    async def _stop_grpc(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(GRPC_GRACE_SECONDS)
            self._grpc = None

    async def _stop_writer(self) -> None:
        if self.writer is not None and self._writer_task is not None:
            self.writer.stop()
            await self._writer_task
            self._writer_task = None
