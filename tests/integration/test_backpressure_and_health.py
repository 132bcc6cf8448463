"""A full write queue answers UNAVAILABLE with RetryInfo without a spool, and defers to the
spool with one; health endpoints tell the truth."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from tests import payloads as p
from tests.conftest import RunningDaemon, make_config


@pytest.fixture
def small_queue_daemon(
    database_dsn: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[RunningDaemon]:
    config = make_config(
        database_dsn,
        tmp_path,
        max_buffered_points=1000,
        flush_points=1000,
    )
    config.spool.durability = getattr(request, "param", "fsync")
    running = RunningDaemon(config)
    try:
        yield running
    finally:
        running.stop()


def thousand_points(name: str) -> bytes:
    points = [p.number_point(float(i), {"i": i}) for i in range(1000)]
    return p.request([p.gauge(name, points)]).SerializeToString()


@pytest.mark.parametrize("small_queue_daemon", ["memory"], indirect=True)
def test_without_a_spool_a_full_queue_is_unavailable_with_retry_info_and_loses_nothing(
    small_queue_daemon: RunningDaemon,
) -> None:
    daemon = small_queue_daemon
    # A slow database: the writer's COPY waits behind this lock, so the queue stays full.
    blocker = daemon.call(asyncpg.connect(daemon.daemon.dsn))
    try:
        daemon.call(blocker.execute("BEGIN; LOCK TABLE point_chunks IN ACCESS EXCLUSIVE MODE"))
        first = p.export(daemon.grpc_target, thousand_points("first"))
        assert first.partial_success.ListFields() == []
        with pytest.raises(grpc.RpcError) as failure:
            p.export(daemon.grpc_target, thousand_points("second"))
    finally:
        daemon.call(blocker.close())  # ends the transaction: the lock goes with it
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
    trailers = dict(failure.value.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.seconds == 1
    # Once the writer catches up the retry is accepted, and both are stored exactly once.
    daemon.flush()
    assert (
        p.export(daemon.grpc_target, thousand_points("second")).partial_success.ListFields() == []
    )
    daemon.flush()
    rows = daemon.query(
        """SELECT s.metric_name, sum(c.point_count) AS n FROM point_chunks c
           JOIN series s ON s.id = c.series_id GROUP BY 1 ORDER BY 1"""
    )
    assert [(r["metric_name"], r["n"]) for r in rows] == [("first", 1000), ("second", 1000)]


def test_with_a_spool_a_full_queue_defers_requests_and_loses_nothing(
    small_queue_daemon: RunningDaemon,
) -> None:
    daemon = small_queue_daemon
    blocker = daemon.call(asyncpg.connect(daemon.daemon.dsn))
    try:
        daemon.call(blocker.execute("BEGIN; LOCK TABLE point_chunks IN ACCESS EXCLUSIVE MODE"))
        for name in ("first", "second", "third"):
            answer = p.export(daemon.grpc_target, thousand_points(name))
            assert answer.partial_success.ListFields() == []
        # The queue holds one request; the others wait in the spool, not in memory.
        assert len(daemon.daemon.intakes["metrics"].deferred) == 2
    finally:
        daemon.call(blocker.close())
    daemon.flush()
    rows: list[tuple[str, int]] = []
    for _ in range(100):
        daemon.flush()
        rows = [
            (r["metric_name"], r["n"])
            for r in daemon.query(
                """SELECT s.metric_name, sum(c.point_count) AS n FROM point_chunks c
                   JOIN series s ON s.id = c.series_id GROUP BY 1 ORDER BY 1"""
            )
        ]
        if len(rows) == 3:
            break
        time.sleep(0.1)
    assert rows == [("first", 1000), ("second", 1000), ("third", 1000)]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_health_endpoints_and_metrics(daemon: RunningDaemon) -> None:
    assert get(f"{daemon.http_url}/healthz") == (200, "ok\n")
    assert get(f"{daemon.http_url}/readyz") == (200, "ready\n")
    p.export(daemon.grpc_target, thousand_points("counted"))
    daemon.flush()
    status, text = get(f"{daemon.http_url}/metrics")
    assert status == 200
    for line in (
        "tidegate_points_accepted_total 1000.0",
        "tidegate_points_stored_total 1000.0",
        'tidegate_export_requests_total{signal="metrics",status="OK",tenant="default"} 1.0',
        'tidegate_copy_batches_total{outcome="ok"} 1.0',
        "tidegate_copy_duration_seconds_count 1.0",
        "tidegate_buffered_points 0.0",
        "tidegate_known_series 1000.0",
        "tidegate_series_created_total 1000.0",
    ):
        assert line in text.splitlines(), line
    assert "process_resident_memory_bytes" in text
