"""What every tidegate dashboard shares: datasource references, panel and query helpers.

Built on grafana-foundation-sdk's classic dashboard model (``builders.dashboard``): it is the
JSON that Grafana's file provisioning loads on every version from 10 on. The SDK marks it
deprecated in favour of the v2 schema, which file provisioning only reads behind feature
flags, so its import-time DeprecationWarning is silenced here, once.
"""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog import variants as cogvariants
    from grafana_foundation_sdk.models import common as common_models
    from grafana_foundation_sdk.models.common import DataSourceRef

# The uids docker/grafana/provisioning/datasources/tidegate.yaml gives the datasources.
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
POSTGRES = DataSourceRef(type_val="grafana-postgresql-datasource", uid="tidegate-postgres")
TEMPO = DataSourceRef(type_val="tempo", uid="tidegate-tempo")


class SqlQuery(cogvariants.Dataquery):
    """A PostgreSQL datasource target: the SDK has no builder for that plugin."""

    def __init__(self, ref_id: str, sql: str, fmt: str) -> None:
        if fmt not in ("time_series", "table"):
            raise ValueError(f"unknown SQL result format {fmt!r}")
        self.ref_id, self.sql, self.fmt = ref_id, sql, fmt

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": {"type": POSTGRES.type_val, "uid": POSTGRES.uid},
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.sql,
            "refId": self.ref_id,
        }


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builds a :class:`SqlQuery` (``fmt`` is ``time_series`` or ``table``)."""

    def __init__(self, sql: str, fmt: str = "time_series", ref_id: str = "A") -> None:
        self._query = SqlQuery(ref_id, sql.strip(), fmt)

    def build(self) -> cogvariants.Dataquery:
        return self._query


def promql(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).range()


class PanelIds:
    """Hands out panel ids in building order, so that regenerating gives the same ids."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> int:
        self._next += 1
        return self._next


def graph(
    ids: PanelIds,
    title: str,
    unit: str,
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]],
    datasource: DataSourceRef = PROMETHEUS,
    description: str = "",
    width: int = 12,
) -> timeseries.Panel:
    legend = (
        common_builders.VizLegendOptions()
        .show_legend(True)
        .display_mode(common_models.LegendDisplayMode.LIST)
        .placement(common_models.LegendPlacement.BOTTOM)
    )
    panel = (
        timeseries.Panel()
        .id(ids())
        .title(title)
        .datasource(datasource)
        .unit(unit)
        .targets(targets)
        .legend(legend)
        .height(8)
        .span(width)
    )
    return panel.description(description) if description else panel


def single(
    ids: PanelIds,
    title: str,
    unit: str,
    target: cogbuilder.Builder[cogvariants.Dataquery],
    datasource: DataSourceRef = PROMETHEUS,
    description: str = "",
    width: int = 6,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .id(ids())
        .title(title)
        .datasource(datasource)
        .unit(unit)
        .with_target(target)
        .height(8)
        .span(width)
    )
    return panel.description(description) if description else panel


def base(title: str, uid: str, tags: list[str], time_from: str = "now-6h") -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["tidegate", *tags])
        .time(time_from, "now")
        .timezone("utc")
        .refresh("30s")
        .editable()
    )


def as_dict(built: Any) -> Any:
    """The dashboard as plain JSON values (the SDK's models serialize through ``to_json``)."""
    if hasattr(built, "to_json"):
        return as_dict(built.to_json())
    if isinstance(built, dict):
        return {k: as_dict(v) for k, v in built.items()}
    if isinstance(built, list | tuple):
        return [as_dict(v) for v in built]
    return built
