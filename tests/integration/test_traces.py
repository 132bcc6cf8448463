"""Traces end to end: the OpenTelemetry SDK exports nested spans (attributes, events, links,
status) over OTLP/gRPC, some in later requests and blocks; reading them back by id, over the
Tempo-compatible HTTP API and through the CLI gives exactly what the SDK recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from tests.conftest import RunningDaemon, make_config
from tests.integration.moto_s3 import REGION, running_moto_server
from tidegate.object_store import FileStore
from tidegate.traces import CorruptBlockError, get_trace

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def daemon(database_dsn: str, tmp_path: Path) -> Iterator[RunningDaemon]:
    config = make_config(database_dsn, tmp_path)
    config.traces.block_max_age_seconds = 0.1  # blocks cut quickly: later spans, later blocks
    # A dictionary small enough that even these blocks of a few spans get one, so that every
    # read below goes through it.
    config.traces.dictionary_bytes = 8
    running = RunningDaemon(config)
    try:
        yield running
    finally:
        running.stop()


def wait_stored(daemon: RunningDaemon, spans: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = daemon.query("SELECT coalesce(sum(span_count), 0) AS n FROM trace_index")
        if rows[0]["n"] >= spans:
            return
        time.sleep(0.05)
    pytest.fail(f"{spans} spans were not indexed in {timeout} s")


def record_trace(daemon: RunningDaemon) -> list[ReadableSpan]:
    """A checkout trace: a server root, a client child with an event and an error, a
    grandchild with a link; each span is exported when it ends (children first), and the root
    only after a block has been cut."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    exporter = OTLPSpanExporter(endpoint=daemon.grpc_target, insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop", "1.0")
    linked = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.route", "/pay")
        with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT) as charge:
            charge.set_attribute("amount", 42)
            charge.set_attribute("retry", True)
            charge.add_event("card.declined", {"code": "51", "attempt": 2})
            with tracer.start_as_current_span("ledger", links=[Link(linked, {"why": "audit"})]):
                pass
            charge.set_status(Status(StatusCode.ERROR, "card declined"))
        time.sleep(0.4)  # the children are in an earlier block than the root
    provider.shutdown()
    return list(memory.get_finished_spans())


def value(any_value: dict[str, Any]) -> Any:
    ((kind, v),) = any_value.items()
    return {"intValue": int, "doubleValue": float}.get(kind, lambda x: x)(v)


def attrs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: value(kv["value"]) for kv in items}


def by_span_id(document: dict[str, Any], key: str = "resourceSpans") -> dict[str, Any]:
    spans = {}
    for rs in document[key]:
        service = attrs(rs["resource"]["attributes"])["service.name"]
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                spans[span["spanId"]] = {**span, "service": service, "scope": ss["scope"]}
    return spans


def assert_same(sent: list[ReadableSpan], document: dict[str, Any], key: str) -> None:
    stored = by_span_id(document, key)
    assert len(stored) == len(sent)
    for span in sent:
        ctx = span.get_span_context()
        got = stored[f"{ctx.span_id:016x}"]
        assert got["traceId"] == f"{ctx.trace_id:032x}"
        assert got["parentSpanId"] == (f"{span.parent.span_id:016x}" if span.parent else "")
        assert got["name"] == span.name
        assert got["kind"] == span.kind.value + 1  # OTLP counts UNSPECIFIED as 0
        assert int(got["startTimeUnixNano"]) == span.start_time
        assert int(got["endTimeUnixNano"]) == span.end_time
        assert attrs(got["attributes"]) == dict(span.attributes or {})
        assert [
            (e["name"], int(e["timeUnixNano"]), attrs(e["attributes"])) for e in got["events"]
        ] == [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events]
        assert [(ln["traceId"], ln["spanId"], attrs(ln["attributes"])) for ln in got["links"]] == [
            (f"{ln.context.trace_id:032x}", f"{ln.context.span_id:016x}", dict(ln.attributes or {}))
            for ln in span.links
        ]
        assert got["status"].get("code", 0) == span.status.status_code.value
        assert got["status"].get("message", "") == (span.status.description or "")
        assert got["service"] == "checkout"
        assert (got["scope"]["name"], got["scope"]["version"]) == ("shop", "1.0")


def read(daemon: RunningDaemon, trace_id: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        conn = await asyncpg.connect(daemon.daemon.dsn)
        try:
            assert daemon.daemon.store is not None
            return await get_trace(conn, daemon.daemon.store, trace_id)
        finally:
            await conn.close()

    return daemon.call(run())


def test_sdk_trace_round_trips_exactly_by_id_http_and_cli(daemon: RunningDaemon) -> None:
    sent = record_trace(daemon)
    trace_id = f"{sent[0].get_span_context().trace_id:032x}"
    wait_stored(daemon, len(sent))
    blocks = daemon.query("SELECT block_key, dictionary FROM trace_blocks")
    assert len(blocks) == 2, "the root was exported after the first block was cut"
    assert all(b["dictionary"] for b in blocks), "every block's frames share a dictionary"
    assert_same(sent, read(daemon, trace_id), "resourceSpans")
    # Grafana's Tempo datasource: JSON batches, or protobuf on request.
    url = f"{daemon.http_url}/api/traces/{trace_id}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("application/json")
        assert_same(sent, json.loads(answer.read()), "batches")
    request = urllib.request.Request(url, headers={"Accept": "application/protobuf"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        data = trace_pb2.TracesData.FromString(answer.read())
    assert sorted(
        s.name for rs in data.resource_spans for ss in rs.scope_spans for s in ss.spans
    ) == sorted(s.name for s in sent)
    for bad, status in [("f" * 32, 404), ("not-hex", 400), ("1" * 33, 400)]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{daemon.http_url}/api/traces/{bad}", timeout=10)
        assert refused.value.code == status
        refused.value.close()
    waterfall = subprocess.run(
        [sys.executable, "-m", "tidegate.cli", "trace", trace_id, "--dsn", daemon.daemon.dsn,
         "--data-dir", daemon.daemon.config.data_dir],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert waterfall.returncode == 0, waterfall.stderr
    lines = waterfall.stdout.splitlines()
    assert "3 spans" in lines[0]
    assert [line.split(":")[1].split()[0] for line in lines[1:4]] == ["POST", "charge", "ledger"]
    assert lines[2].startswith("  ")
    assert lines[3].startswith("    ")
    assert "ERROR card declined" in lines[2]


def export_raw(daemon: RunningDaemon, payload: bytes) -> bytes:
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        return bytes(channel.unary_unary(TRACE_METHOD)(payload, timeout=10))


def test_malformed_requests_are_refused_and_bad_spans_rejected(daemon: RunningDaemon) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        export_raw(daemon, b"\x0a\x05garbage-not-protobuf")
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    request = ts.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    now = time.time_ns()
    good = spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="ok")
    good.start_time_unix_nano, good.end_time_unix_nano = now, now + 1000
    for trace_id, span_id, end in [
        (b"\x00" * 16, b"\x03" * 8, now),
        (b"\x01" * 16, b"", now),
        (b"\x01" * 16, b"\x04" * 8, now - 1),
    ]:
        bad = spans.add(trace_id=trace_id, span_id=span_id, name="bad")
        bad.start_time_unix_nano, bad.end_time_unix_nano = now, end
    answer = ts.ExportTraceServiceResponse.FromString(
        export_raw(daemon, request.SerializeToString())
    )
    assert answer.partial_success.rejected_spans == 3
    assert "trace_id must not be all zeros" in answer.partial_success.error_message
    wait_stored(daemon, 1)
    assert daemon.query("SELECT sum(span_count) AS n FROM trace_index")[0]["n"] == 1


def test_missing_and_corrupt_blocks_are_named(daemon: RunningDaemon, tmp_path: Path) -> None:
    sent = record_trace(daemon)
    trace_id = f"{sent[0].get_span_context().trace_id:032x}"
    wait_stored(daemon, len(sent))
    keys = [r["block_key"] for r in daemon.query("SELECT block_key FROM trace_blocks ORDER BY 1")]
    root = tmp_path / "traces"
    (root / keys[0]).write_bytes(b"\x00" * (root / keys[0]).stat().st_size)
    with pytest.raises(CorruptBlockError, match=trace_id):
        read(daemon, trace_id)
    (root / keys[0]).unlink()
    with pytest.raises(CorruptBlockError, match=keys[0]):
        read(daemon, trace_id)
    cli = subprocess.run(
        [sys.executable, "-m", "tidegate.cli", "trace", trace_id, "--dsn", daemon.daemon.dsn,
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 1
    assert keys[0] in cli.stderr
    assert isinstance(daemon.daemon.store, FileStore)


def test_search_by_service_name_duration_status_and_attribute(daemon: RunningDaemon) -> None:
    sent = record_trace(daemon)
    wait_stored(daemon, len(sent))
    trace_id = f"{sent[0].get_span_context().trace_id:032x}"
    root = next(s for s in sent if s.parent is None)
    duration_ms = (root.end_time - root.start_time) / 1e6

    def search(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tidegate.cli", "traces", "search", "--dsn", daemon.daemon.dsn,
             "--data-dir", daemon.daemon.config.data_dir, "--start=-10m", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    for args, found in [
        ([], True),
        (["--service", "checkout"], True),
        (["--service", "other"], False),
        (["--name", "POST /pay"], True),
        (["--name", "charge"], False),
        (["--status", "error"], True),
        (["--status", "ok"], False),
        (["--attribute", "http.route=/pay"], True),
        (["--attribute", "amount=42"], True),
        (["--attribute", "amount=43"], False),
        (["--min-duration", f"{int(duration_ms) - 50}ms"], True),
        (["--min-duration", f"{int(duration_ms) + 500}ms"], False),
        (["--max-duration", "1ms"], False),
    ]:
        result = search(*args)
        assert result.returncode == 0, result.stderr
        assert (trace_id in result.stdout) is found, (args, result.stdout)
    bad = search("--attribute", "no-equals-sign")
    assert bad.returncode == 2
    assert "key=value" in bad.stderr


def test_s3_store_round_trip_over_moto(database_dsn: str, tmp_path: Path) -> None:
    import boto3

    with running_moto_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        client.create_bucket(Bucket="traces")
        config = make_config(database_dsn, tmp_path)
        config.traces.store = "s3://traces/tidegate"
        config.traces.block_max_age_seconds = 0.1
        config.s3.endpoint_url = endpoint
        config.s3.region = REGION
        config.s3.access_key_id = config.s3.secret_access_key = "testing"
        daemon = RunningDaemon(config)
        try:
            sent = record_trace(daemon)
            wait_stored(daemon, len(sent))
            trace_id = f"{sent[0].get_span_context().trace_id:032x}"
            assert_same(sent, read(daemon, trace_id), "resourceSpans")
            keys = {r["block_key"] for r in daemon.query("SELECT block_key FROM trace_blocks")}
        finally:
            daemon.stop()
        listed = client.list_objects_v2(Bucket="traces", Prefix="tidegate/")
        stored = {o["Key"].removeprefix("tidegate/"): o["Size"] for o in listed["Contents"]}
        assert set(stored) == keys
        assert all(key.startswith("blocks/") and key.endswith(".tgb") for key in keys)
        client.close()
