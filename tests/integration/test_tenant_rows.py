"""Tenants in stored rows: requests ingested for two tenants through the real core, spool and
writer land in PostgreSQL as separate series, each `series` and `rollups` row naming its
tenant; the active-series limit refuses new series of a tenant at its limit."""

from __future__ import annotations

import time

from tests import payloads
from tests.conftest import RunningDaemon
from tidegate._core import ExportSummary
from tidegate.intake import request_hash
from tidegate.spool import SpoolRecord

NS = 1_000_000_000
# Three hours ago, on an hour: its windows and hour close at the first flush.
BASE = (payloads.now_ns() // (3600 * NS) - 3) * 3600 * NS


def hosts_request(series: int, points: int = 2) -> bytes:
    """Gauge `cpu` with `series` series (attribute `host`), `points` points each in
    the first window of BASE's hour."""
    metrics = [
        payloads.gauge(
            "cpu",
            [
                payloads.number_point(float(p), {"host": f"h{h}"}, time=BASE + p * NS)
                for h in range(series)
                for p in range(points)
            ],
        )
    ]
    return payloads.request(metrics, payloads.DEFAULT_RESOURCE).SerializeToString()


def accept(daemon: RunningDaemon, tenant: str, request: bytes) -> ExportSummary:
    """What the receiver does with an Export request of `tenant`: ingest, spool, account."""
    core = daemon.daemon.core
    writer = daemon.daemon.writer
    assert writer is not None
    now_ns = time.time_ns()
    summary = core.ingest(request, now_ns, tenant=tenant)
    record = SpoolRecord(
        summary.seq, now_ns, tenant, request_hash("metrics", tenant, request), request
    )
    daemon.call(daemon.daemon.intakes["metrics"].persist(record, summary.response))
    writer.account(summary)
    return summary


def counts(daemon: RunningDaemon, sql: str) -> dict[str, int]:
    return {r["tenant"]: r["n"] for r in daemon.query(sql)}


def test_rows_of_two_tenants_name_their_tenant(daemon: RunningDaemon) -> None:
    same = hosts_request(2)
    assert accept(daemon, "acme", same).accepted_points == 4
    assert accept(daemon, "globex", same).accepted_points == 4
    assert accept(daemon, "globex", hosts_request(3)).accepted_points == 6
    daemon.flush()
    assert counts(daemon, "SELECT tenant, count(*) AS n FROM series GROUP BY tenant") == {
        "acme": 2,
        "globex": 3,
    }
    ids = daemon.query("SELECT tenant, id FROM series WHERE attributes->>'host' = 'h0'")
    assert len({r["id"] for r in ids}) == 2, "the same series of two tenants has two ids"
    # One window (60 s) and one hour row per series; the rows name the series' tenant.
    assert counts(
        daemon,
        "SELECT tenant, count(*) AS n FROM rollups WHERE window_seconds = 60 GROUP BY tenant",
    ) == {"acme": 2, "globex": 3}
    assert counts(
        daemon,
        "SELECT tenant, count(*) AS n FROM rollups WHERE window_seconds = 3600 GROUP BY tenant",
    ) == {"acme": 2, "globex": 3}
    assert counts(
        daemon,
        "SELECT r.tenant, sum(r.points)::int AS n FROM rollups AS r "
        "JOIN series AS s ON s.id = r.series_id AND s.tenant = r.tenant "
        "WHERE r.window_seconds = 60 GROUP BY r.tenant",
    ) == {"acme": 4, "globex": 10}
    assert daemon.query("SELECT count(*) AS n FROM series WHERE tenant = 'default'")[0]["n"] == 0


def test_a_tenant_at_its_limit_stores_only_its_active_series(daemon: RunningDaemon) -> None:
    core = daemon.daemon.core
    core.set_series_limits({"acme": 2}, None)
    summary = accept(daemon, "acme", hosts_request(3))
    assert (summary.accepted_points, summary.rejected_points) == (4, 2)
    assert summary.rejected_by_reason == {"series_limit": 2}
    assert "tenant acme is at its limit of 2 active series" in summary.error_message
    assert accept(daemon, "globex", hosts_request(3)).accepted_points == 6
    assert core.active_series_by_tenant() == {"default": 0, "acme": 2, "globex": 3}
    daemon.flush()
    assert counts(daemon, "SELECT tenant, count(*) AS n FROM series GROUP BY tenant") == {
        "acme": 2,
        "globex": 3,
    }
