"""The generated Grafana dashboards: committed output is current, every SQL query runs against
data the OpenTelemetry SDK sent through a real daemon, every panel names a provisioned
datasource."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from tests.conftest import RunningDaemon, fresh_database, make_config, missing_dependency

GRAFANA = Path(__file__).resolve().parents[2] / "docker" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "tidegate.yaml"
# The semantic conventions' advisory bounds for http.server.request.duration, in seconds.
HTTP_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
MAX_SECONDS = 2.0
TEN_YEARS = 315_360_000


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        if panel.get("type") != "row":
            yield panel
        yield from panel.get("panels", [])  # panels of a collapsed row


def sql_queries() -> list[Any]:
    found = []
    for name, board in load_dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                if "rawSql" in target:
                    found.append(pytest.param(target["rawSql"], id=f"{name}:{panel['title']}"))
    return found


# --- (a) the committed files are what the generator writes ------------------------------------


def test_generator_output_matches_committed_files(tmp_path: Path) -> None:
    if importlib.util.find_spec("grafana_foundation_sdk") is None:
        missing_dependency("grafana-foundation-sdk is not installed (pip install -e '.[dev]')")
    subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--out", str(tmp_path)],
        check=True,
        timeout=60,
    )
    generated = sorted(p.name for p in tmp_path.glob("*.json"))
    assert generated == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for name in generated:
        assert (tmp_path / name).read_bytes() == (DASHBOARDS / name).read_bytes(), (
            f"{name} is stale: run `make dashboards` and commit the result"
        )


# --- (c) datasources and targets ---------------------------------------------------------------


def provisioned_uids() -> set[str]:
    config = yaml.safe_load(DATASOURCES.read_text())
    return {source["uid"] for source in config["datasources"]}


def test_every_panel_and_variable_uses_a_provisioned_datasource_and_has_a_target() -> None:
    uids = provisioned_uids()
    assert uids == {"prometheus", "tidegate-postgres", "tidegate-tempo"}
    boards = load_dashboards()
    assert boards, "no generated dashboards"
    for name, board in boards.items():
        for panel in panels(board):
            where = f"{name}: panel {panel['title']!r}"
            assert panel["datasource"]["uid"] in uids, where
            assert panel.get("targets"), f"{where} has no target"
            for target in panel["targets"]:
                text = target.get("expr") or target.get("rawSql") or target.get("query")
                assert text, f"{where} has an empty target"
                assert text.strip(), f"{where} has an empty target"
                if "datasource" in target:
                    assert target["datasource"]["uid"] == panel["datasource"]["uid"], where
        for variable in board.get("templating", {}).get("list", []):
            if "datasource" in variable:
                assert variable["datasource"]["uid"] in uids, f"{name}: ${variable['name']}"
    ids = [p["id"] for b in boards.values() for p in b["panels"]]
    assert all(isinstance(i, int) for i in ids)


# --- (b) every SQL query runs against real data ------------------------------------------------


class MacroExpander:
    """Grafana's SQL macros and variables, as Grafana's PostgreSQL datasource expands those
    the dashboards use, for one fixed time range and interval."""

    def __init__(self, start: dt.datetime, end: dt.datetime, interval_seconds: int) -> None:
        self.start, self.end, self.interval = start, end, interval_seconds

    def __call__(self, sql: str, variables: dict[str, str]) -> str:
        def iso(t: dt.datetime) -> str:
            return "'" + t.strftime("%Y-%m-%dT%H:%M:%SZ") + "'"

        def time_group(m: re.Match[str]) -> str:
            column, alias = m.group(2).strip(), m.group(1)
            expr = f"floor(extract(epoch from {column})/{self.interval})*{self.interval}"
            return expr + (' AS "time"' if alias else "")

        sql = sql.replace("$__interval_ms", str(self.interval * 1000))
        sql = re.sub(r"\$__timeGroup(Alias)?\(([^,]+),\s*\$__interval\)", time_group, sql)
        sql = re.sub(
            r"\$__timeFilter\(([^)]+)\)",
            lambda m: f"{m.group(1)} BETWEEN {iso(self.start)} AND {iso(self.end)}",
            sql,
        )
        sql = sql.replace("$__timeFrom()", iso(self.start)).replace("$__timeTo()", iso(self.end))
        sql = sql.replace("$__unixEpochFrom()", str(int(self.start.timestamp())))
        sql = sql.replace("$__unixEpochTo()", str(int(self.end.timestamp())))
        sql = sql.replace("$__interval", f"'{self.interval}s'")
        for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
            sql = sql.replace(f"${name}", value)
        leftover = re.findall(r"\$[A-Za-z_]\w*", sql)
        assert not leftover, f"unexpanded macros or variables: {leftover}"
        return sql


def quoted(values: list[str]) -> str:
    """A multi-value variable as Grafana's SQL datasources insert it."""
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


# Requests per service: (method, route, status, seconds), each recorded five times a round.
TRAFFIC = {
    "checkout": [
        ("GET", "/cart", 200, 0.02),
        ("POST", "/buy", 200, 0.3),
        ("POST", "/buy", 503, 2.0),
    ],
    "billing": [("GET", "/invoice/{id}", 200, 0.004), ("POST", "/pay", 500, 0.8)],
}
ROUNDS = 2  # one export each: two cumulative points per series


def observations(service: str, round_: int) -> list[tuple[dict[str, Any], float]]:
    return [
        (
            {"http.request.method": method, "http.route": route, "http.response.status_code": code},
            seconds * (1 + i / 10) * (round_ + 1),
        )
        for method, route, code, seconds in TRAFFIC[service]
        for i in range(5)
    ]


def send_http_metrics(daemon: RunningDaemon) -> None:
    """http.server.request.duration from two services, through the real SDK over OTLP/gRPC."""
    for service in TRAFFIC:
        exporter = OTLPMetricExporter(endpoint=daemon.grpc_target, insecure=True)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        resource = Resource.create({"service.name": service})
        provider = MeterProvider(resource=resource, metric_readers=[reader])
        duration = provider.get_meter("io.opentelemetry.http").create_histogram(
            "http.server.request.duration",
            unit="s",
            explicit_bucket_boundaries_advisory=HTTP_BOUNDS,
        )
        for round_ in range(ROUNDS):
            for attributes, seconds in observations(service, round_):
                duration.record(seconds, attributes)
            assert provider.force_flush(10_000)
        provider.shutdown()


def bucket_quantile(q: float, values: list[float]) -> float:
    """Prometheus' histogram_quantile over HTTP_BOUNDS buckets: the reference for p95."""
    buckets = list(zip([0.0, *HTTP_BOUNDS[:-1]], HTTP_BOUNDS, strict=True))
    rank, below = q * len(values), 0
    for lower, upper in buckets:
        n = sum(1 for v in values if lower < v <= upper)
        if n and below + n >= rank:
            return lower + (upper - lower) * (rank - below) / n
        below += n
    return HTTP_BOUNDS[-1]  # in the +Inf bucket: its lower bound


@pytest.fixture(scope="module")
def rollup_dsn(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(postgres_server) as dsn:
        daemon = RunningDaemon(make_config(dsn, tmp_path_factory.mktemp("daemon")))
        try:
            send_http_metrics(daemon)
            daemon.flush()
        finally:
            daemon.stop()  # writes every open window and hour as rollup rows
        yield dsn


async def fetch(dsn: str, sql: str) -> tuple[list[asyncpg.Record], float]:
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        rows = await conn.fetch(sql)
        return list(rows), time.perf_counter() - started
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def expand(rollup_dsn: str) -> Any:
    """Expands a query with the dashboards' variables set as Grafana would after loading."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    expander = MacroExpander(now - dt.timedelta(days=30), now + dt.timedelta(minutes=5), 3600)
    variables: dict[str, str] = {}
    board = load_dashboards()["tidegate-application.json"]
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        rows, _ = asyncio.run(fetch(rollup_dsn, expander(variable["query"], variables)))
        values = [r[0] for r in rows]
        assert values, f"variable ${variable['name']} has no values"
        if variable.get("multi"):
            variables[variable["name"]] = quoted(values)
        else:
            assert variable["current"]["value"] in values
            variables[variable["name"]] = variable["current"]["value"]
    assert variables["service"] == "'billing','checkout'"

    def expand_with(sql: str, interval_seconds: int = 3600) -> str:
        expander.interval = interval_seconds
        return expander(sql, variables)

    return expand_with


@pytest.mark.parametrize("sql", sql_queries())
def test_sql_query_returns_rows_quickly(rollup_dsn: str, expand: Any, sql: str) -> None:
    rows, seconds = asyncio.run(fetch(rollup_dsn, expand(sql)))
    assert rows, "no rows"
    assert any(v is not None for row in rows for v in row.values()), rows
    assert seconds < MAX_SECONDS, f"took {seconds:.2f} s"


def test_p95_and_error_ratio_match_what_was_sent(rollup_dsn: str, expand: Any) -> None:
    from_board = {
        p["title"]: p["targets"][0]["rawSql"]
        for p in panels(load_dashboards()["tidegate-application.json"])
    }

    # One time bucket holds everything: ten years, aligned on the epoch (1970, ..., 2030).
    def run(title: str) -> list[asyncpg.Record]:
        return asyncio.run(fetch(rollup_dsn, expand(from_board[title], TEN_YEARS)))[0]

    sent = {
        service: [o for r in range(ROUNDS) for o in observations(service, r)] for service in TRAFFIC
    }
    ratio = run("Error ratio (5xx)")
    assert {r["metric"]: r["value"] for r in ratio} == pytest.approx(
        {
            service: sum(a["http.response.status_code"] >= 500 for a, _ in obs) / len(obs)
            for service, obs in sent.items()
        }
    )
    latency = run("Latency p95")
    assert {r["metric"]: r["value"] for r in latency} == pytest.approx(
        {service: bucket_quantile(0.95, [v for _, v in obs]) for service, obs in sent.items()}
    )
    rate = run("Request rate")
    assert {r["metric"]: r["value"] * TEN_YEARS for r in rate} == pytest.approx(
        {service: len(obs) for service, obs in sent.items()}
    )
