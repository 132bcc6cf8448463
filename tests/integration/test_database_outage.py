"""PostgreSQL going away and coming back: accepted points wait, are retried, and all arrive."""

from __future__ import annotations

import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import payloads as p
from tests.conftest import RunningDaemon, make_config
from tidegate.database import start_embedded_server

POINTS_PER_REQUEST = 200


@pytest.fixture
def own_postgres() -> Iterator[Path]:
    """A PostgreSQL server of this test's own, which the test stops and restarts."""
    root = Path(tempfile.mkdtemp(prefix="tidegate-outage-"))
    root.chmod(0o755)  # the server runs as its own system user when tests run as root
    pgdata = root / "pgdata"
    try:
        start_embedded_server(pgdata, keep_data=True)
        yield pgdata
        start_embedded_server(pgdata, keep_data=False).cleanup()
    finally:
        # The server's cleanup deletes the cluster, not the directory made for it.
        shutil.rmtree(root, ignore_errors=True)


def send(daemon: RunningDaemon, name: str) -> None:
    points = [p.number_point(float(i), {"i": i}) for i in range(POINTS_PER_REQUEST)]
    payload = p.request([p.gauge(name, points)]).SerializeToString()
    assert p.export(daemon.grpc_target, payload).partial_success.ListFields() == []


def retried_batches(daemon: RunningDaemon) -> float:
    with urllib.request.urlopen(f"{daemon.http_url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "tidegate_copy_batches_total" and s.labels.get("outcome") == "retried"
    )


def wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_points_accepted_during_an_outage_are_stored_once_it_ends(
    own_postgres: Path, tmp_path: Path
) -> None:
    server = start_embedded_server(own_postgres)
    daemon = RunningDaemon(make_config(server.get_uri(), tmp_path, flush_interval_seconds=0.1))
    try:
        send(daemon, "before")
        daemon.flush()
        server.cleanup()  # PostgreSQL stops

        for i in range(5):  # still accepted: the write queue has room
            send(daemon, f"during{i}")
        wait_for(lambda: retried_batches(daemon) >= 2)
        assert daemon.daemon.writer is not None
        assert daemon.daemon.writer.unwritten_points == 5 * POINTS_PER_REQUEST

        server = start_embedded_server(own_postgres)  # PostgreSQL is back
        wait_for(
            lambda: daemon.daemon.writer is not None and daemon.daemon.writer.unwritten_points == 0
        )
        rows = daemon.query(
            """SELECT s.metric_name, sum(c.point_count) AS n FROM point_chunks c
               JOIN series s ON s.id = c.series_id GROUP BY 1 ORDER BY 1"""
        )
        expected = [("before", 200)] + [(f"during{i}", 200) for i in range(5)]
        assert [(r["metric_name"], r["n"]) for r in rows] == expected
    finally:
        daemon.stop()
        server.cleanup()


def test_an_outage_longer_than_the_write_queue_is_absorbed_by_the_spool(
    own_postgres: Path, tmp_path: Path
) -> None:
    server = start_embedded_server(own_postgres)
    config = make_config(
        server.get_uri(),
        tmp_path,
        flush_interval_seconds=0.1,
        flush_points=POINTS_PER_REQUEST,
        max_buffered_points=2 * POINTS_PER_REQUEST,
    )
    daemon = RunningDaemon(config)
    try:
        server.cleanup()  # PostgreSQL stops
        # Ten times what the write queue holds: every request is still acknowledged.
        for i in range(20):
            send(daemon, f"during{i}")
        deferred = daemon.daemon.intakes["metrics"].deferred
        assert len(deferred) >= 15, "the queue holds two requests; the rest wait in the spool"

        server = start_embedded_server(own_postgres)  # PostgreSQL is back
        wait_for(lambda: not daemon.daemon.intakes["metrics"].deferred, timeout=60)
        daemon.flush()
        wait_for(
            lambda: (
                daemon.query("SELECT sum(point_count) AS n FROM point_chunks")[0]["n"]
                == 20 * POINTS_PER_REQUEST
            ),
            timeout=60,
        )
        rows = daemon.query(
            """SELECT s.metric_name, sum(c.point_count) AS n FROM point_chunks c
               JOIN series s ON s.id = c.series_id GROUP BY 1 ORDER BY 1"""
        )
        assert sorted((r["metric_name"], r["n"]) for r in rows) == sorted(
            (f"during{i}", POINTS_PER_REQUEST) for i in range(20)
        )
    finally:
        daemon.stop()
        server.cleanup()


def stop_with_postgres_down(own_postgres: Path, tmp_path: Path, durability: str) -> RunningDaemon:
    """Accept a request, stop PostgreSQL before anything is written, stop the daemon: the
    stop is bounded by the shutdown timeout."""
    server = start_embedded_server(own_postgres)
    config = make_config(server.get_uri(), tmp_path, flush_interval_seconds=3600.0)
    config.shutdown_timeout_seconds = 1.0
    config.spool.durability = durability
    daemon = RunningDaemon(config)
    try:
        send(daemon, "kept")
        server.cleanup()  # PostgreSQL stops before anything was written
    finally:
        started = time.monotonic()
        daemon.stop()
    assert time.monotonic() - started < 15
    return daemon


def test_points_left_at_shutdown_stay_in_the_spool_and_arrive_at_the_next_start(
    own_postgres: Path, tmp_path: Path
) -> None:
    stopped = stop_with_postgres_down(own_postgres, tmp_path, "fsync")
    assert (
        stopped.daemon.telemetry.registry.get_sample_value(
            "tidegate_points_dropped_total", {"reason": "storage_unavailable_at_shutdown"}
        )
        is None
    )
    server = start_embedded_server(own_postgres)  # back, with the same data directory
    daemon = RunningDaemon(make_config(server.get_uri(), tmp_path))
    try:
        replayed = daemon.daemon.telemetry.registry.get_sample_value(
            "tidegate_spool_replayed_records_total", {"signal": "metrics", "mode": "full"}
        )
        assert replayed == 1
        daemon.flush()
        rows = daemon.query(
            """SELECT s.metric_name, sum(c.point_count) AS n FROM point_chunks c
               JOIN series s ON s.id = c.series_id GROUP BY 1"""
        )
        assert [(r["metric_name"], r["n"]) for r in rows] == [("kept", POINTS_PER_REQUEST)]
    finally:
        daemon.stop()
        server.cleanup()


def test_without_a_spool_points_left_at_shutdown_are_counted_as_lost(
    own_postgres: Path, tmp_path: Path
) -> None:
    stopped = stop_with_postgres_down(own_postgres, tmp_path, "memory")
    dropped = stopped.daemon.telemetry.registry.get_sample_value(
        "tidegate_points_dropped_total", {"reason": "storage_unavailable_at_shutdown"}
    )
    assert dropped == POINTS_PER_REQUEST
