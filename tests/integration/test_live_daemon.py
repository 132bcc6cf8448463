"""Live settings on a running daemon: a change through each source is in force within a
second, limits throttle real OTLP exporters (RESOURCE_EXHAUSTED with RetryInfo) without losing
their data, the cardinality limit and sampling act as documented, and a bad value changes
nothing."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import grpc
import pytest
import redis
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests import payloads as p
from tests.conftest import RunningDaemon, make_config
from tests.integration.test_bad_input import metric_samples
from tests.integration.test_serve_command import serve, terminate
from tests.integration.test_tenancy import TRACE_METHOD, span_request
from tests.redis_server import running_redis_server


@pytest.fixture
def daemon(database_dsn: str, tmp_path: Path) -> Iterator[RunningDaemon]:
    config = make_config(database_dsn, tmp_path)
    config.live.source = "postgres"
    config.traces.block_max_age_seconds = 0.1
    running = RunningDaemon(config)
    try:
        yield running
    finally:
        running.stop()


def set_live(daemon: RunningDaemon, key: str, value: str) -> None:
    daemon.query(
        "INSERT INTO tidegate_config (key, value) VALUES ($1, $2) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()",
        key,
        value,
    )


def unset_live(daemon: RunningDaemon, key: str) -> None:
    daemon.query("DELETE FROM tidegate_config WHERE key = $1", key)


def send_gauge(target: str, value: float = 1.0) -> grpc.StatusCode:
    payload = p.request([p.gauge("live.gauge", [p.number_point(value)])]).SerializeToString()
    try:
        p.export(target, payload)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def seconds_until(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not in force after {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - started


def throttled_within(target: str, change: Callable[[], None]) -> float:
    """Seconds from ``change()`` until a request is refused with RESOURCE_EXHAUSTED, once
    requests passed before it."""
    assert send_gauge(target) is grpc.StatusCode.OK
    change()
    return seconds_until(lambda: send_gauge(target) is grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_a_postgres_change_is_in_force_within_a_second_and_a_bad_value_changes_nothing(
    daemon: RunningDaemon,
) -> None:
    def limit() -> None:
        set_live(daemon, "limits.default.requests_per_second", "0.5")

    took = throttled_within(daemon.grpc_target, limit)
    assert took < 1.0
    payload = p.request([p.gauge("live.gauge", [p.number_point(2.0)])]).SerializeToString()
    with pytest.raises(grpc.RpcError) as refused:
        p.export(daemon.grpc_target, payload)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over its limit of 0.5 requests/s" in (refused.value.details() or "")
    trailers = dict(refused.value.trailing_metadata() or ())
    assert "google.rpc.retryinfo-bin" in trailers

    rejected = ("tidegate_live_config_rejected_total", (("key", "limits.*.requests_per_second"),))
    before = metric_samples(daemon).get(rejected, 0)
    set_live(daemon, "limits.default.requests_per_second", "lots")
    seconds_until(lambda: metric_samples(daemon).get(rejected, 0) == before + 1)
    # The previous value stays in force.
    assert send_gauge(daemon.grpc_target) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert daemon.daemon.live is not None
    assert daemon.daemon.live.snapshot.limit("default", "requests") == (0.5, 1.0)

    unset_live(daemon, "limits.default.requests_per_second")
    seconds_until(lambda: send_gauge(daemon.grpc_target) is grpc.StatusCode.OK)


def test_a_lowered_limit_throttles_the_sdk_exporter_and_once_raised_all_its_data_arrives(
    daemon: RunningDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    set_live(daemon, "limits.default.spans_per_second", "100")
    seconds_until(
        lambda: (
            daemon.daemon.live is not None
            and daemon.daemon.live.snapshot.limit("default", "spans") == (100.0, 100.0)
        )
    )
    recorder = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "throttled"}))
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    tracer = provider.get_tracer("tests")
    batches = []
    for _ in range(4):
        recorder.clear()
        for n in range(250):
            with tracer.start_as_current_span(f"op{n}"):
                pass
        batches.append(recorder.get_finished_spans())
    exporter = OTLPSpanExporter(endpoint=daemon.grpc_target, insecure=True, timeout=30)
    results: list[SpanExportResult] = []

    def export_all() -> None:
        for batch in batches:
            results.append(exporter.export(batch))

    caplog.set_level(logging.WARNING, logger="opentelemetry.exporter.otlp.proto.grpc.exporter")
    sender = threading.Thread(target=export_all)
    sender.start()
    throttled = ("tidegate_throttled_requests_total", (("signal", "traces"), ("tenant", "default")))
    seconds_until(lambda: metric_samples(daemon).get(throttled, 0) >= 1, timeout=20)
    set_live(daemon, "limits.default.spans_per_second", "1000000")
    sender.join(60)
    exporter.shutdown()
    assert results == [SpanExportResult.SUCCESS] * 4
    assert any(
        "RESOURCE_EXHAUSTED" in r.getMessage() and "retrying in" in r.getMessage()
        for r in caplog.records
    )

    def indexed() -> int:
        rows = daemon.query("SELECT coalesce(sum(span_count), 0) AS n FROM trace_index")
        return int(rows[0]["n"])

    seconds_until(lambda: indexed() == 1000, timeout=30)
    assert indexed() == 1000


def test_the_cardinality_limit_refuses_new_series_and_keeps_existing_ones(
    daemon: RunningDaemon,
) -> None:
    set_live(daemon, "cardinality.*.max_active_series", "5")
    assert daemon.daemon.live is not None
    seconds_until(lambda: daemon.daemon.live.snapshot.series_limits() == ({}, 5))  # type: ignore[union-attr]

    def request(hosts: Iterable[int], value: float) -> bytes:
        points = [p.number_point(value, {"host": f"h{h}"}) for h in hosts]
        return p.request([p.gauge("card.gauge", points)]).SerializeToString()

    def stored() -> dict[str, int]:
        daemon.flush()
        rows = daemon.query(
            "SELECT s.attributes ->> 'host' AS host, sum(c.point_count) AS n "
            "FROM series s JOIN point_chunks c ON c.series_id = s.id GROUP BY 1"
        )
        return {r["host"]: int(r["n"]) for r in rows}

    first = p.export(daemon.grpc_target, request(range(8), 1.0))
    assert first.partial_success.rejected_data_points == 3
    assert (
        "tenant default is at its limit of 5 active series" in first.partial_success.error_message
    )
    # Which five of the eight new series got in is the core's order; those five keep flowing.
    admitted = stored()
    assert len(admitted) == 5
    assert set(admitted.values()) == {1}
    active = sorted(int(host[1:]) for host in admitted)
    again = p.export(daemon.grpc_target, request(active, 2.0))
    assert again.partial_success.rejected_data_points == 0
    assert stored() == dict.fromkeys(admitted, 2)
    samples = metric_samples(daemon)
    assert samples[("tidegate_points_rejected_total", (("reason", "series_limit"),))] == 3
    assert samples[("tidegate_active_series", (("tenant", "default"),))] in {0, 5}

    set_live(daemon, "cardinality.*.max_active_series", "8")
    seconds_until(lambda: daemon.daemon.live.snapshot.series_limits() == ({}, 8))  # type: ignore[union-attr]
    raised = p.export(daemon.grpc_target, request(range(8), 3.0))
    assert raised.partial_success.rejected_data_points == 0


def test_sampling_keeps_or_drops_whole_traces(daemon: RunningDaemon) -> None:
    set_live(daemon, "sampling.*.ratio", "0.5")
    assert daemon.daemon.live is not None
    seconds_until(lambda: daemon.daemon.live.snapshot.sampling() == ({}, 0.5))  # type: ignore[union-attr]
    trace_ids = [(n * 0x9E3779B97F4A7C15 % 2**128).to_bytes(16, "big") for n in range(1, 201)]
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        export = channel.unary_unary(TRACE_METHOD)
        for part in ("first", "second"):  # every trace arrives in two requests
            for trace_id in trace_ids:
                names = [f"{part}-a", f"{part}-b"] if part == "first" else [f"{part}-c"]
                export(span_request(trace_id, names, {"service.name": "shop"}), timeout=30)
    # OpenTelemetry's consistent sampling: kept when the id's last 7 bytes ≥ (1 - 0.5) * 2^56.
    kept = {t for t in trace_ids if int.from_bytes(t[9:], "big") >= 2**55}
    assert 70 < len(kept) < 130

    def stored() -> dict[bytes, int]:
        rows = daemon.query(
            "SELECT trace_id, sum(span_count) AS n FROM trace_index GROUP BY trace_id"
        )
        return {bytes(r["trace_id"]): int(r["n"]) for r in rows}

    seconds_until(lambda: sum(stored().values()) == 3 * len(kept), timeout=30)
    assert stored() == dict.fromkeys(kept, 3)
    samples = metric_samples(daemon)
    dropped = samples[("tidegate_spans_sampled_out_total", (("tenant", "default"),))]
    assert dropped == 3 * (len(trace_ids) - len(kept))


def test_sighup_rereads_the_config_file(tmp_path: Path, database_dsn: str) -> None:
    config_file = tmp_path / "tidegate.toml"

    def write(settings: str) -> None:
        config_file.write_text(
            f'data_dir = "{tmp_path / "data"}"\n[storage]\ndsn = "{database_dsn}"\n'
            f'[live]\nsource = "file"\n[live.settings]\n{settings}'
        )

    write("")
    with serve("--config", str(config_file)) as (process, target, _http):
        assert send_gauge(target) is grpc.StatusCode.OK

        def limit_and_hup() -> None:
            write('"limits.default.requests_per_second" = 0.5\n')
            process.send_signal(signal.SIGHUP)

        assert throttled_within(target, limit_and_hup) < 1.0
        write("")
        process.send_signal(signal.SIGHUP)
        seconds_until(lambda: send_gauge(target) is grpc.StatusCode.OK)
        output = terminate(process)
    assert output.count("SIGHUP: reading the live settings again") == 2


def test_a_redis_change_is_in_force_within_a_second(database_dsn: str, tmp_path: Path) -> None:
    with running_redis_server() as server:
        config = make_config(database_dsn, tmp_path)
        config.live.source = "redis"
        config.live.redis_url = server.url
        running = RunningDaemon(config)
        client = redis.Redis.from_url(server.url)
        try:
            prefix = config.live.redis_prefix

            def limit() -> None:
                key = "limits.default.requests_per_second"
                client.set(prefix + key, "0.5")
                client.publish(prefix + "changes", key)

            assert throttled_within(running.grpc_target, limit) < 1.0
        finally:
            client.close()
            running.stop()
