"""`series` rows: a series new to this process but already stored (another process, an earlier
run) is not inserted twice, and one stored under the same id with another fingerprint is
counted and logged as a collision, after which this process rejects its points (the writer
looks for collisions only when some staged row was already there)."""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path

import pytest

from tests import payloads as p
from tests.conftest import RunningDaemon, make_config


def _gauges(*names: str) -> bytes:
    metrics = [p.gauge(name, [p.number_point(1.0)]) for name in names]
    return p.request(metrics).SerializeToString()


def _counter(daemon: RunningDaemon, sample: str) -> float:
    with urllib.request.urlopen(f"{daemon.http_url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(sample + " ")]
    return float(values[0]) if values else 0.0


def _stored_points(daemon: RunningDaemon) -> dict[str, int]:
    rows = daemon.query(
        """SELECT s.metric_name, sum(c.point_count)::int AS n FROM point_chunks c
           JOIN series s ON s.id = c.series_id GROUP BY 1"""
    )
    return {r["metric_name"]: r["n"] for r in rows}


def test_stored_series_are_not_inserted_again_and_collisions_are_counted(
    database_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = RunningDaemon(make_config(database_dsn, tmp_path / "first"))
    try:
        p.export(first.grpc_target, _gauges("alpha", "beta", "gamma"))
        first.flush()
        assert _counter(first, "tidegate_series_created_total") == 3
    finally:
        first.stop()
    # Another series stored under beta's id: what a 64-bit collision with another process
    # looks like from here.
    first.execute("UPDATE series SET fingerprint = fingerprint # 1 WHERE metric_name = 'beta'")

    # A second process (its own spool and core: all four series are new to it).
    second = RunningDaemon(make_config(database_dsn, tmp_path / "second"))
    try:
        with caplog.at_level(logging.ERROR, logger="tidegate.metrics_writer"):
            p.export(second.grpc_target, _gauges("alpha", "beta", "gamma", "delta"))
            second.flush()
        assert _counter(second, "tidegate_series_created_total") == 1
        assert _counter(second, 'tidegate_series_collisions_total{where="database"}') == 1
        assert "series id collision with stored series: beta" in caplog.text
        names = [r["metric_name"] for r in second.query("SELECT metric_name FROM series")]
        assert sorted(names) == ["alpha", "beta", "delta", "gamma"]
        points = _stored_points(second)
        assert (points["alpha"], points["gamma"], points["delta"]) == (2, 2, 1)
        # From now on this process rejects beta's points instead of storing them under the
        # other series' id; the rest of a request is stored.
        reply = p.export(second.grpc_target, _gauges("alpha", "beta"))
        assert reply.partial_success.rejected_data_points == 1
        assert "collision" in reply.partial_success.error_message
        second.flush()
        after = _stored_points(second)
        assert (after["alpha"], after["beta"]) == (3, points["beta"])
    finally:
        second.stop()
