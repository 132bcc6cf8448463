"""Rollups through the real daemon and PostgreSQL: windows, partial rows and their merge, hour
rollups, counters, histograms, and the awkward cases (late, out of order, reset, restart, two
daemons). Windows hold fewer than 62 values, so digests are exact and answers can be compared
with ``==``."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

from tests import payloads
from tests.conftest import RunningDaemon, make_config
from tidegate import checkpoints
from tidegate.query import QueryResult, aggregate, parse_aggregation, parse_selector
from tidegate.query.timespec import TimeRange

NS = 1_000_000_000
MINUTE = 60 * NS
# Three hours ago, on an hour: its windows and hour close at the first flush.
BASE = (payloads.now_ns() // (3600 * NS) - 3) * 3600 * NS
LONG_AGO = BASE - 86_400 * NS


def at(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / NS, dt.UTC)


def send(
    daemon: RunningDaemon, metrics: Sequence[m.Metric], resource: dict[str, str] | None = None
) -> None:
    request = payloads.request(metrics, resource or payloads.DEFAULT_RESOURCE)
    response = payloads.export(daemon.grpc_target, request.SerializeToString())
    assert response.partial_success.rejected_data_points == 0


def query(
    dsn: str,
    selector: str,
    agg: str,
    *,
    start: int = BASE,
    end: int = BASE + 3600 * NS,
    step_seconds: int | None = 60,
    by: tuple[str, ...] = (),
) -> QueryResult:
    async def run() -> QueryResult:
        conn = await asyncpg.connect(dsn)
        try:
            step = None if step_seconds is None else dt.timedelta(seconds=step_seconds)
            span = TimeRange(at(start), at(end), step)
            return await aggregate(
                conn, parse_selector(selector), span, parse_aggregation(agg), by=by
            )
        finally:
            await conn.close()

    return asyncio.run(run())


def values(result: QueryResult) -> list[float | None]:
    assert len(result.series) == 1
    return [v for v in result.series[0].values if v is not None]


def gauge_points(values: Sequence[float], start: int, spacing: int = NS) -> list[m.NumberDataPoint]:
    return [payloads.number_point(v, time=start + i * spacing) for i, v in enumerate(values)]


def test_gauge_windows_give_exact_count_sum_min_max_and_quantiles(daemon: RunningDaemon) -> None:
    # 30 values in each of the first two windows: 1..30 and 31..60.
    send(daemon, [payloads.gauge("temp", gauge_points(range(1, 61), BASE, spacing=2 * NS))])
    daemon.flush()
    rows = daemon.query(
        "SELECT window_start, count, sum, min, max, p50, p99 FROM rollups "
        "WHERE window_seconds = 60 ORDER BY window_start"
    )
    assert [(r["count"], r["sum"], r["min"], r["max"]) for r in rows] == [
        (30, 465.0, 1.0, 30.0),
        (30, 1365.0, 31.0, 60.0),
    ]
    assert [r["p50"] for r in rows] == [16.0, 46.0]
    dsn = daemon.daemon.dsn
    assert values(query(dsn, "temp", "count")) == [30.0, 30.0]
    assert values(query(dsn, "temp", "sum")) == [465.0, 1365.0]
    assert values(query(dsn, "temp", "avg")) == [15.5, 45.5]
    # One bucket for the whole hour: answered from the hour rollup, merged from the windows.
    hour = query(dsn, "temp", "quantile(0.5)", step_seconds=3600)
    assert hour.resolution_seconds == 3600
    assert values(hour) == [31.0]  # x[floor(0.5 * 60)] of 1..60
    assert values(query(dsn, "temp", "max", step_seconds=3600)) == [60.0]
    hour_rows = daemon.query("SELECT count, p50 FROM rollups WHERE window_seconds = 3600")
    assert [(r["count"], r["p50"]) for r in hour_rows] == [(60, 31.0)]


def test_late_points_add_a_partial_row_that_readers_merge(daemon: RunningDaemon) -> None:
    send(daemon, [payloads.gauge("late", gauge_points([5.0, 1.0, 9.0], BASE))])
    daemon.flush()
    send(daemon, [payloads.gauge("late", gauge_points([7.0, 3.0], BASE + 10 * NS))])
    daemon.flush()
    partials = daemon.query("SELECT count FROM rollups WHERE window_seconds = 60 ORDER BY count")
    assert [r["count"] for r in partials] == [2, 3]
    dsn = daemon.daemon.dsn
    assert values(query(dsn, "late", "count")) == [5.0]
    assert values(query(dsn, "late", "quantile(0.5)")) == [5.0]
    assert values(query(dsn, "late", "min")) == [1.0]
    # The hour level got a partial row for each flush too, and merges the same way.
    assert values(query(dsn, "late", "sum", step_seconds=3600)) == [25.0]


def counter(values_and_times: Sequence[tuple[float, int]], start: int) -> m.Metric:
    points = [payloads.number_point(v, time=t, start=start) for v, t in values_and_times]
    return payloads.sum_metric("requests", points)


def test_counter_increase_and_rate_out_of_order_and_across_a_reset(daemon: RunningDaemon) -> None:
    epoch2 = BASE + 2 * MINUTE + 5 * NS  # the process restarted: a new start time
    send(
        daemon, [counter([(30.0, BASE + 20 * NS), (10.0, BASE), (20.0, BASE + 10 * NS)], LONG_AGO)]
    )
    send(daemon, [counter([(45.0, BASE + MINUTE + 30 * NS)], LONG_AGO)])
    send(
        daemon,
        [counter([(4.0, BASE + 2 * MINUTE + 10 * NS), (9.0, BASE + 2 * MINUTE + 40 * NS)], epoch2)],
    )
    daemon.flush()
    dsn = daemon.daemon.dsn
    # Window 0: first sight of a long-running counter, so from its first value: 30 - 10.
    # Window 1: 45 - 30. Window 2: a new epoch, counted from 0: 9.
    assert query(dsn, "requests", "increase").series[0].values[:3] == [20.0, 15.0, 9.0]
    assert query(dsn, "requests", "rate").series[0].values[:3] == [20 / 60, 15 / 60, 9 / 60]
    assert values(query(dsn, "requests", "increase", step_seconds=3600)) == [44.0]


def test_counter_reset_without_a_new_start_time_is_detected(daemon: RunningDaemon) -> None:
    points = [(10.0, BASE), (20.0, BASE + 10 * NS), (5.0, BASE + 20 * NS), (8.0, BASE + 30 * NS)]
    send(daemon, [counter(points, 0)])
    daemon.flush()
    # 10 → 20 (+10), reset to 5 (+5), 5 → 8 (+3).
    assert values(query(daemon.daemon.dsn, "requests", "increase")) == [18.0]


def test_delta_and_cumulative_histograms_merge_bucket_counts(daemon: RunningDaemon) -> None:
    bounds = [10.0, 20.0, 30.0]
    delta = [
        payloads.histogram_point(bounds, [1, 2, 1, 0], 50.0, time=BASE, minimum=5.0, maximum=25.0),
        payloads.histogram_point(
            bounds, [0, 1, 1, 2], 120.0, time=BASE + NS, minimum=15.0, maximum=40.0
        ),
    ]
    send(daemon, [payloads.histogram("delta.h", delta, temporality=payloads.DELTA)])
    cumulative = [
        payloads.histogram_point(bounds, [1, 1, 0, 0], 20.0, time=BASE + 10 * NS),
        payloads.histogram_point(bounds, [2, 3, 1, 0], 70.0, time=BASE + MINUTE + 10 * NS),
    ]
    for point in cumulative:
        point.start_time_unix_nano = BASE
    send(daemon, [payloads.histogram("cumulative.h", cumulative)])
    daemon.flush()
    dsn = daemon.daemon.dsn
    rows = daemon.query(
        "SELECT bucket_counts, count, sum FROM rollups AS r JOIN series AS s ON s.id = r.series_id"
        " WHERE s.metric_name = 'delta.h' AND window_seconds = 60"
    )
    assert [(r["bucket_counts"], r["count"], r["sum"]) for r in rows] == [([1, 3, 2, 2], 8, 170.0)]
    assert values(query(dsn, "delta.h", "count")) == [8.0]
    # Rank 4 of 8 ends the second bucket (10, 20]: 20.
    assert values(query(dsn, "delta.h", "quantile(0.5)")) == [20.0]
    # The cumulative histogram: window 0 holds its first state, window 1 the difference.
    assert query(dsn, "cumulative.h", "count").series[0].values[:2] == [2.0, 4.0]
    assert query(dsn, "cumulative.h", "sum").series[0].values[:2] == [20.0, 50.0]


def gauge_and_counter(i: int, t: int) -> list[m.Metric]:
    return [
        payloads.gauge("load", [payloads.number_point(float(i % 17), time=t)]),
        payloads.sum_metric("jobs", [payloads.number_point(float(3 * i), time=t, start=LONG_AGO)]),
    ]


AGGREGATIONS = ["count", "sum", "min", "max", "avg", "quantile(0.5)", "quantile(0.9)"]


def answers(dsn: str, start: int, end: int) -> dict[str, list[float | None]]:
    out = {
        f"load {a}": query(dsn, "load", a, start=start, end=end, step_seconds=None).series[0].values
        for a in AGGREGATIONS
    }
    out["jobs increase"] = (
        query(dsn, "jobs", "increase", start=start, end=end, step_seconds=None).series[0].values
    )
    return out


def test_restart_and_two_daemons_answer_like_one(
    database_dsn: str, reference_dsn: str, tmp_path: Path
) -> None:
    # Points in the current window: a restart and a second daemon split windows that are
    # still open, which is the case partial rows exist for.
    t0 = payloads.now_ns() - 30 * NS
    batches = [gauge_and_counter(i, t0 + i * 100_000_000) for i in range(1, 41)]
    reference = RunningDaemon(make_config(reference_dsn, tmp_path / "ref"))
    try:
        for metrics in batches:
            send(reference, metrics)
    finally:
        reference.stop()
    # Restart in the middle: the first daemon stops (writing its open windows as partial rows)
    # after 10 requests; then two daemons share the rest, alternating requests.
    first = RunningDaemon(make_config(database_dsn, tmp_path / "a"))
    try:
        for metrics in batches[:10]:
            send(first, metrics)
    finally:
        first.stop()
    second = RunningDaemon(make_config(database_dsn, tmp_path / "b"))
    third = RunningDaemon(make_config(database_dsn, tmp_path / "c"))
    try:
        for i, metrics in enumerate(batches[10:]):
            send(second if i % 2 else third, metrics)
    finally:
        second.stop()
        third.stop()
    start, end = t0 - 5 * MINUTE, t0 + 5 * MINUTE
    expected = answers(reference_dsn, start, end)
    assert answers(database_dsn, start, end) == expected
    # And both equal the data itself.
    loads = sorted(float(i % 17) for i in range(1, 41))
    assert expected["load count"] == [40.0]
    assert expected["load sum"] == [math.fsum(loads)]
    assert expected["load quantile(0.5)"] == [loads[20]]
    assert expected["jobs increase"] == [3.0 * 40 - 3.0]


def test_shutdown_writes_the_open_windows_then_the_open_hours_in_two_commits(
    database_dsn: str, tmp_path: Path
) -> None:
    # Points of the last 20 s: their windows and hour are open when the daemon stops.
    start = payloads.now_ns() - 20 * NS
    loads = [float(v) for v in range(1, 21)]
    daemon = RunningDaemon(make_config(database_dsn, tmp_path))
    try:
        send(daemon, [payloads.gauge("open", gauge_points(loads, start))])
        daemon.flush()
        assert rollup_rows(daemon) == []
        batches = copy_batches(daemon)
    finally:
        daemon.stop()
    assert copy_batches(daemon) == batches + 2  # the windows, then the hours
    assert rollup_rows(daemon) == expected_rows(loads, start)
    assert metrics_checkpoint(daemon)[:3] == (I64_MAX, I64_MAX, I64_MAX)
    # The checkpoint names the records whose windows it wrote, and before the hour flush
    # (its second batch): every committed one, the request among them.
    checkpoint = load_metrics_checkpoint(daemon)
    assert 1 in checkpoint.committed
    assert checkpoint.windows_written == checkpoint.committed
    assert checkpoint.hour_flush_windows_written == checkpoint.committed
    # A checkpoint written before those sets were kept implies them.
    daemon.execute(
        """UPDATE tidegate_checkpoints SET windows_written_floor = NULL,
               windows_written_extras = NULL, hour_flush_windows_written_floor = NULL,
               hour_flush_windows_written_extras = NULL"""
    )
    derived = load_metrics_checkpoint(daemon)
    assert derived.windows_written == derived.hour_flush_windows_written == checkpoint.committed


HOUR_UNWRITABLE = """
CREATE FUNCTION hour_unwritable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.window_seconds = 3600 THEN
        RAISE EXCEPTION 'hour rows unwritable for now' USING ERRCODE = '40001';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER hour_unwritable BEFORE INSERT ON rollups
    FOR EACH ROW EXECUTE FUNCTION hour_unwritable();
"""


def test_a_shutdown_cut_short_between_its_batches_loses_and_repeats_nothing(
    database_dsn: str, tmp_path: Path
) -> None:
    start = payloads.now_ns() - 20 * NS
    loads = [float(v) for v in range(1, 21)]
    config = make_config(database_dsn, tmp_path)
    config.shutdown_timeout_seconds = 1.0
    first = RunningDaemon(config)
    try:
        send(first, [payloads.gauge("open", gauge_points(loads, start))])
        first.flush()
        # The hours batch fails (a retryable error) until the shutdown gives up on it.
        first.execute(HOUR_UNWRITABLE)
    finally:
        first.stop()
    first.execute("DROP TRIGGER hour_unwritable ON rollups")
    windows = [row for row in expected_rows(loads, start) if row[0] == 60]
    assert rollup_rows(first) == windows
    closed_at, hours_closed_at, _, _ = metrics_checkpoint(first)
    assert closed_at == I64_MAX
    assert hours_closed_at < I64_MAX  # the hours that were open are not written

    second = RunningDaemon(config)
    try:
        second.flush()
        # Its first batch wrote the rebuilt hours, so no later checkpoint needs the first
        # daemon's requests: a crash cannot replay them into windows written already.
        closed_at, hours_closed_at, hours_flushed_at, open_from_seq = metrics_checkpoint(second)
        assert closed_at == hours_closed_at == hours_flushed_at < I64_MAX
        assert open_from_seq is None
        assert rollup_rows(second) == expected_rows(loads, start)
    finally:
        second.stop()
    assert rollup_rows(second) == expected_rows(loads, start)


I64_MAX = 2**63 - 1


def copy_batches(daemon: RunningDaemon) -> float | None:
    registry = daemon.daemon.telemetry.registry
    value: float | None = registry.get_sample_value(
        "tidegate_copy_batches_total", {"outcome": "ok"}
    )
    return value


def rollup_rows(daemon: RunningDaemon) -> list[tuple[int, int, float]]:
    rows = daemon.query(
        "SELECT window_seconds, count, sum FROM rollups ORDER BY window_seconds, window_start"
    )
    return [(r["window_seconds"], r["count"], r["sum"]) for r in rows]


def expected_rows(loads: Sequence[float], start: int) -> list[tuple[int, int, float]]:
    """One row per window and per hour the points (one a second from ``start``) fall in."""
    rows = []
    for width in (MINUTE, 3600 * NS):
        parts: dict[int, list[float]] = {}
        for i, v in enumerate(loads):
            parts.setdefault((start + i * NS) // width, []).append(v)
        rows += [(width // NS, len(vs), math.fsum(vs)) for _, vs in sorted(parts.items())]
    return rows


def metrics_checkpoint(daemon: RunningDaemon) -> tuple[int, int, int, int | None]:
    row = daemon.query(
        """SELECT closed_at_ns, hours_closed_at_ns, hours_flushed_at_ns, open_from_seq
           FROM tidegate_checkpoints WHERE sink = 'metrics'"""
    )[0]
    return (
        row["closed_at_ns"],
        row["hours_closed_at_ns"],
        row["hours_flushed_at_ns"],
        row["open_from_seq"],
    )


def load_metrics_checkpoint(daemon: RunningDaemon) -> checkpoints.Checkpoint:
    async def load() -> checkpoints.Checkpoint:
        conn = await asyncpg.connect(daemon.daemon.dsn)
        try:
            spool_id = await conn.fetchval(
                "SELECT spool_id FROM tidegate_checkpoints WHERE sink = 'metrics'"
            )
            return await checkpoints.load(conn, spool_id, "metrics")
        finally:
            await conn.close()

    return asyncio.run(load())
