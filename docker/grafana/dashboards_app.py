"""Dashboards over what applications sent: HTTP server metrics from the rollups, traces."""

from __future__ import annotations

import rollup_sql
from common import POSTGRES, TEMPO, PanelIds, Sql, base, graph, single
from dashboards_ops import health as ops_health
from dashboards_ops import operations
from grafana_foundation_sdk.builders import dashboard, table, tempo
from grafana_foundation_sdk.models.dashboard import VariableOption, VariableRefresh, VariableSort

SQL_DATASOURCE = {"type": POSTGRES.type_val, "uid": POSTGRES.uid}


def _variables(board: dashboard.Dashboard) -> None:
    board.with_variable(
        dashboard.QueryVariable("metric")
        .label("Metric")
        .datasource(POSTGRES)
        .query(rollup_sql.METRIC_VARIABLE.strip())
        .definition(rollup_sql.METRIC_VARIABLE.strip())
        .current(VariableOption(text=rollup_sql.HTTP_DURATION, value=rollup_sql.HTTP_DURATION))
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    board.with_variable(
        dashboard.QueryVariable("service")
        .label("Service")
        .datasource(POSTGRES)
        .query(rollup_sql.SERVICE_VARIABLE.strip())
        .definition(rollup_sql.SERVICE_VARIABLE.strip())
        .multi(True)
        .include_all(True)
        .current(VariableOption(text="All", value="$__all"))
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def application() -> dashboard.Dashboard:
    """Request rate, 5xx ratio and p95 latency per service, from `rollups`."""
    ids = PanelIds()
    board = base("application overview", "tidegate-application", ["applications"])
    _variables(board)
    note = (
        "From tidegate's rollups of $metric (OpenTelemetry HTTP semantic conventions), "
        "per service.name."
    )
    board.with_panel(
        graph(
            ids,
            "Request rate",
            "reqps",
            [Sql(rollup_sql.request_rate())],
            datasource=POSTGRES,
            description=note,
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Error ratio (5xx)",
            "percentunit",
            [Sql(rollup_sql.error_ratio())],
            datasource=POSTGRES,
            description="Requests answered with http.response.status_code 5xx, over all.",
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Latency p95",
            "s",
            [Sql(rollup_sql.latency_p95())],
            datasource=POSTGRES,
            description="From the summed bucket increases of the histogram's rollups.",
            width=8,
        )
    )
    return board


def health() -> dashboard.Dashboard:
    """The daemon's health panels plus the 24-hour availability of the applications."""
    ids = PanelIds()
    board = ops_health(ids)
    board.with_panel(
        single(
            ids,
            "Availability, 24 h",
            "percentunit",
            Sql(rollup_sql.availability(by_service=False), fmt="table"),
            datasource=POSTGRES,
            description=f"Non-5xx requests over all, from the rollups of "
            f"{rollup_sql.HTTP_DURATION}.",
        ).time_from("24h")
    )
    board.with_panel(
        table.Panel()
        .id(ids())
        .title("Availability by service, 24 h")
        .datasource(POSTGRES)
        .unit("percentunit")
        .with_target(Sql(rollup_sql.availability(by_service=True), fmt="table"))
        .time_from("24h")
        .height(8)
        .span(6)
    )
    return board


def traces() -> dashboard.Dashboard:
    """Opens one trace by id through tidegate's Tempo-compatible endpoint."""
    ids = PanelIds()
    board = base("tidegate traces", "tidegate-traces", ["traces"], time_from="now-1h")
    board.with_variable(dashboard.TextBoxVariable("trace_id").label("Trace id (32 hex digits)"))
    board.with_panel(
        dashboard.Panel()
        .type("traces")
        .id(ids())
        .title("Trace $trace_id")
        .datasource(TEMPO)
        .with_target(tempo.Dataquery().query("$trace_id").query_type("traceql").ref_id("A"))
        .height(20)
        .span(24)
    )
    return board


def dashboards() -> dict[str, dashboard.Dashboard]:
    """Every generated dashboard by file name (without .json)."""
    return {
        "tidegate-operations": operations(),
        "tidegate-health": health(),
        "tidegate-application": application(),
        "tidegate-traces": traces(),
    }
