"""Tenants end to end through a running daemon: API keys decide who writes, nothing of a refused
request is stored, and no attribute or header lets one tenant write into or read from another."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests import payloads as p
from tests.certificates import make_pki
from tests.conftest import RunningDaemon, make_config
from tests.integration.test_bad_input import metric_samples
from tidegate import api_keys
from tidegate.errors import AuthenticationError
from tidegate.query import parse_selector, raw_points
from tidegate.query.timespec import TimeRange
from tidegate.traces import TraceNotFoundError, get_trace

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def daemon(database_dsn: str, tmp_path: Path) -> Iterator[RunningDaemon]:
    config = make_config(database_dsn, tmp_path)
    config.auth.required = True
    config.traces.block_max_age_seconds = 0.1
    running = RunningDaemon(config)
    try:
        yield running
    finally:
        running.stop()


def new_key(daemon: RunningDaemon, tenant: str) -> str:
    async def create() -> str:
        conn = await asyncpg.connect(daemon.daemon.dsn)
        try:
            _key_id, key = await api_keys.create_key(conn, tenant)
            return key
        finally:
            await conn.close()

    key = daemon.call(create())
    wait_until(lambda: authenticates(daemon, key), "the new key to be known")
    return key


def authenticates(daemon: RunningDaemon, key: str) -> bool:
    try:
        daemon.daemon.api_keys.authenticate([("authorization", f"Bearer {key}")], required=True)
    except AuthenticationError:
        return False
    return True


def wait_until(condition: Any, what: str, timeout: float = 5.0) -> float:
    """Seconds until ``condition()`` held."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def call(
    daemon: RunningDaemon,
    method: str,
    payload: bytes,
    metadata: Sequence[tuple[str, str]] = (),
    compression: grpc.Compression | None = None,
) -> bytes:
    with grpc.insecure_channel(daemon.grpc_target, compression=compression) as channel:
        reply: bytes = channel.unary_unary(method)(payload, metadata=metadata, timeout=30)
        return reply


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def gauge_request(value: float, resource: dict[str, Any] | None = None) -> bytes:
    metric = p.gauge("shared.gauge", [p.number_point(value, {"host": "a"})])
    return p.request([metric], resource=resource or {"service.name": "svc"}).SerializeToString()


def span_request(trace_id: bytes, names: Sequence[str], resource: dict[str, Any]) -> bytes:
    now = time.time_ns()
    spans = [
        trace_pb2.Span(
            trace_id=trace_id,
            span_id=(i + 1).to_bytes(8, "big"),
            name=name,
            start_time_unix_nano=now - 1_000_000,
            end_time_unix_nano=now,
        )
        for i, name in enumerate(names)
    ]
    attrs = [
        common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
        for k, v in resource.items()
    ]
    return ts.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=attrs),
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    ).SerializeToString()


def stored_series(daemon: RunningDaemon) -> list[tuple[str, str]]:
    daemon.flush()
    rows = daemon.query("SELECT tenant, metric_name FROM series ORDER BY tenant")
    return [(r["tenant"], r["metric_name"]) for r in rows]


def test_requests_without_a_valid_key_are_refused_before_decoding_and_store_nothing(
    daemon: RunningDaemon,
) -> None:
    key = new_key(daemon, "acme")
    key_id = key.split("_")[1]
    forged = f"tg_{key_id}_{'A' * 43}"  # the right key id with the wrong secret
    # Not a request at all: were it decompressed or decoded, the answer would be
    # INVALID_ARGUMENT (as it is with a valid key, below).
    garbage = b"\xff" * 4096
    refusals = {
        "no key": [],
        "not bearer": [("authorization", f"Basic {key}")],
        "unknown key": bearer(f"tg_{'0' * 12}_{'A' * 43}"),
        "wrong secret": bearer(forged),
        "malformed": bearer("hunter2"),
    }
    for what, metadata in refusals.items():
        for payload in (gauge_request(1.0), garbage):
            with pytest.raises(grpc.RpcError) as refused:
                call(daemon, p.EXPORT_METHOD, payload, metadata, grpc.Compression.Gzip)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, what
            assert key not in (refused.value.details() or "")
    samples = metric_samples(daemon)
    refused_label = (("signal", "metrics"), ("status", "UNAUTHENTICATED"), ("tenant", ""))
    assert samples[("tidegate_export_requests_total", refused_label)] == 2 * len(refusals)
    # Refused before the handler read them: not a byte counted as received.
    assert samples.get(("tidegate_export_request_bytes_total", (("signal", "metrics"),)), 0) == 0
    assert stored_series(daemon) == []

    with pytest.raises(grpc.RpcError) as undecodable:
        call(daemon, p.EXPORT_METHOD, garbage, bearer(key))
    assert undecodable.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    call(daemon, p.EXPORT_METHOD, gauge_request(1.0), bearer(key))
    assert stored_series(daemon) == [("acme", "shared.gauge")]

    async def revoke() -> int:
        conn = await asyncpg.connect(daemon.daemon.dsn)
        try:
            return await api_keys.revoke(conn, key_id=key_id)
        finally:
            await conn.close()

    assert daemon.call(revoke()) == 1
    took = wait_until(lambda: not authenticates(daemon, key), "the revocation to take effect")
    assert took < 1.0
    with pytest.raises(grpc.RpcError) as revoked:
        call(daemon, p.EXPORT_METHOD, gauge_request(2.0), bearer(key))
    assert revoked.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert f"API key {key_id} was revoked" in (revoked.value.details() or "")
    daemon.flush()
    points = daemon.query("SELECT sum(point_count) AS n FROM point_chunks")
    assert points[0]["n"] == 1


def test_no_attribute_or_header_crosses_tenants(daemon: RunningDaemon) -> None:
    acme, globex = new_key(daemon, "acme"), new_key(daemon, "globex")
    # acme tries to pass as globex in every way a client controls.
    posing = [*bearer(acme), ("x-scope-orgid", "globex"), ("tenant", "globex")]
    call(daemon, p.EXPORT_METHOD, gauge_request(1.0, {"tenant": "globex"}), posing)
    call(daemon, p.EXPORT_METHOD, gauge_request(2.0, {"tenant": "globex"}), bearer(globex))
    trace_id = bytes(range(1, 17))
    call(daemon, TRACE_METHOD, span_request(trace_id, ["a1", "a2"], {"tenant": "globex"}), posing)
    call(
        daemon, TRACE_METHOD, span_request(trace_id, ["g1"], {"service.name": "g"}), bearer(globex)
    )
    assert stored_series(daemon) == [("acme", "shared.gauge"), ("globex", "shared.gauge")]
    wait_until(
        lambda: daemon.query("SELECT count(*) AS n FROM trace_index")[0]["n"] == 2,
        "both tenants' spans to be indexed",
        timeout=20,
    )
    owners = daemon.query("SELECT tenant, span_count FROM trace_index ORDER BY tenant")
    assert [(r["tenant"], r["span_count"]) for r in owners] == [("acme", 2), ("globex", 1)]

    selector = parse_selector("shared.gauge")
    span = TimeRange(
        start=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
        end=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
        step=None,
    )

    async def read_all() -> dict[str, Any]:
        conn = await asyncpg.connect(daemon.daemon.dsn)
        store = daemon.daemon.store
        assert store is not None
        try:
            out: dict[str, Any] = {}
            for tenant in ("acme", "globex", "initech"):
                result = await raw_points(conn, selector, span, tenant=tenant)
                out[f"{tenant} points"] = [v for s in result.series for v in s.values]
                try:
                    trace = await get_trace(conn, store, trace_id.hex(), tenant=tenant)
                except TraceNotFoundError:
                    out[f"{tenant} spans"] = None
                else:
                    out[f"{tenant} spans"] = sorted(
                        s["name"]
                        for rs in trace["resourceSpans"]
                        for ss in rs["scopeSpans"]
                        for s in ss["spans"]
                    )
            return out
        finally:
            await conn.close()

    assert daemon.call(read_all()) == {
        "acme points": [1.0],
        "acme spans": ["a1", "a2"],
        "globex points": [2.0],
        "globex spans": ["g1"],
        "initech points": [],
        "initech spans": None,
    }

    # The HTTP trace API answers for the tenant of the key, whatever else the request says.
    def http_names(headers: dict[str, str]) -> tuple[int, list[str]]:
        url = f"{daemon.http_url}/api/traces/{trace_id.hex()}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
                document = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, []
        names = sorted(
            s["name"]
            for batch in document["batches"]
            for ss in batch["scopeSpans"]
            for s in ss["spans"]
        )
        return 200, names

    assert http_names({"Authorization": f"Bearer {acme}", "X-Scope-OrgID": "globex"}) == (
        200,
        ["a1", "a2"],
    )
    assert http_names({"Authorization": f"Bearer {globex}"}) == (200, ["g1"])
    assert http_names({"X-Scope-OrgID": "globex"}) == (401, [])
    assert http_names({"Authorization": "Bearer nonsense"}) == (401, [])


def test_mutual_tls_listener_serves_the_sdk_exporter_with_a_client_certificate(
    database_dsn: str, tmp_path: Path
) -> None:
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    config = make_config(database_dsn, tmp_path / "data")
    config.grpc.tls_cert_file = str(pki.server.cert_file)
    config.grpc.tls_key_file = str(pki.server.key_file)
    config.grpc.tls_client_ca_file = str(pki.ca.cert_file)
    running = RunningDaemon(config)
    try:
        target = f"localhost:{running.daemon.grpc_port}"
        trusted = grpc.ssl_channel_credentials(
            root_certificates=pki.ca.cert_pem,
            private_key=pki.client.key_pem,
            certificate_chain=pki.client.cert_pem,
        )
        exporter = OTLPSpanExporter(endpoint=target, credentials=trusted, timeout=10)
        provider = TracerProvider(resource=Resource.create({"service.name": "tls"}))
        recorder = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(recorder))
        with provider.get_tracer("tests").start_as_current_span("over-tls"):
            pass
        assert exporter.export(recorder.get_finished_spans()) is SpanExportResult.SUCCESS
        exporter.shutdown()

        # Without a client certificate, or in plaintext, the handshake fails: nothing is read.
        anonymous = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
        for channel in (
            grpc.secure_channel(target, anonymous),
            grpc.insecure_channel(target),
        ):
            with channel, pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary(p.EXPORT_METHOD)(gauge_request(1.0), timeout=5)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        wait_until(
            lambda: running.query("SELECT count(*) AS n FROM trace_index")[0]["n"] == 1,
            "the span sent over TLS to be indexed",
            timeout=20,
        )
        assert stored_series(running) == []
    finally:
        running.stop()
