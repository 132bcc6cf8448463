"""HTTP endpoint: /metrics for Prometheus, /healthz (the process runs), /readyz (it can
ingest), and the trace-by-id API Grafana's Tempo datasource calls (/api/traces/<id>,
/api/echo)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tidegate.config import parse_listen
from tidegate.errors import AuthenticationError, QueryError
from tidegate.object_store import ObjectStore, ObjectStoreError
from tidegate.telemetry import Telemetry
from tidegate.traces import (
    CorruptBlockError,
    TraceNotFoundError,
    get_trace_json,
    get_trace_protobuf,
)

log = logging.getLogger(__name__)
PROTOBUF = "application/protobuf"


@dataclass(frozen=True)
class TraceApi:
    """What the trace endpoint reads from: the index (a pool of connections) and the store."""

    pool: asyncpg.Pool
    store: ObjectStore
    # The value of a request's Authorization header (None when absent) → its tenant; raises
    # AuthenticationError. Whatever else a request says (X-Scope-OrgID included) is ignored.
    authenticate: Callable[[str | None], str]


class HttpServer:
    """Serves the daemon's own health; ``ready`` says whether ingest can be accepted."""

    def __init__(
        self,
        listen: str,
        telemetry: Telemetry,
        ready: Callable[[], bool],
        traces: TraceApi | None = None,
    ) -> None:
        self._host, self._port = parse_listen("http.listen", listen)
        self._telemetry = telemetry
        self._ready = ready
        self._traces = traces
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self._traces is not None:
            app.router.add_get("/api/traces/{trace_id}", self._trace)
            app.router.add_get("/api/echo", self._echo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._telemetry.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def _echo(self, _: web.Request) -> web.Response:
        # Grafana's Tempo datasource checks the connection with this.
        return web.Response(text="echo")

    async def _trace(self, request: web.Request) -> web.Response:
        """A trace as Tempo answers ``/api/traces/<id>``: OTLP JSON ``{"batches": [...]}``, or
        the encoded ``TracesData`` when the client accepts protobuf."""
        assert self._traces is not None
        trace_id = request.match_info["trace_id"]
        try:
            tenant = self._traces.authenticate(request.headers.get("Authorization"))
        except AuthenticationError as exc:
            return web.json_response(
                {"error": str(exc)}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        protobuf = PROTOBUF in request.headers.get("Accept", "")
        try:
            async with self._traces.pool.acquire() as conn:
                if protobuf:
                    body = await get_trace_protobuf(
                        conn, self._traces.store, trace_id, tenant=tenant
                    )
                    return web.Response(body=body, content_type=PROTOBUF)
                text = await get_trace_json(
                    conn, self._traces.store, trace_id, tempo=True, tenant=tenant
                )
                return web.Response(text=text, content_type="application/json")
        except QueryError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except TraceNotFoundError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except (CorruptBlockError, ObjectStoreError) as exc:
            log.error("cannot read trace %s: %s", trace_id, exc)
            return web.json_response({"error": str(exc)}, status=500)
