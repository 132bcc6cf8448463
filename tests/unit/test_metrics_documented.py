"""docs/metrics.md documents every metric the daemon registers, with its type and labels, and
names no `tidegate_` metric that does not exist, so the page cannot fall out of date."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from tidegate.live.manager import LiveMetrics
from tidegate.telemetry import Telemetry

DOC = Path(__file__).parents[2] / "docs" / "metrics.md"
# The process collector's metrics: one paragraph of their own in the page, not table rows.
OTHER_COLLECTORS = ("process_", "python_")
# The samples prometheus_client exposes for a family; the first is the name a table row gives.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("", "_bucket", "_sum", "_count", "_created"),
}
ROW = re.compile(r"^\| `(tidegate_\w+)` \| (\w+) \| ([^|]*) \|")
LABEL = re.compile(r"`(\w+)`:")
NAME = re.compile(r"\btidegate_[a-z0-9_]+")


def daemon_telemetry() -> Telemetry:
    """A daemon's registry as it is when running: its own metrics and the live settings'."""
    telemetry = Telemetry()
    telemetry.live = LiveMetrics(telemetry.registry)  # type: ignore[attr-defined]
    return telemetry


def families(telemetry: Telemetry) -> dict[str, str]:
    """Type of every family the daemon registers, by family name."""
    return {
        family.name: family.type
        for family in telemetry.registry.collect()
        if not family.name.startswith(OTHER_COLLECTORS)
    }


def label_names(telemetry: Telemetry) -> dict[str, set[str]]:
    """Label names of every metric, by family name."""
    holders = [telemetry, *(v for v in vars(telemetry).values() if isinstance(v, LiveMetrics))]
    metrics = [
        m for holder in holders for m in vars(holder).values() if isinstance(m, MetricWrapperBase)
    ]
    return {family.name: set(m._labelnames) for m in metrics for family in m.describe()}


def rows() -> dict[str, tuple[str, set[str]]]:
    """Type and label names of each table row, by exposed name."""
    found: dict[str, tuple[str, set[str]]] = {}
    for line in DOC.read_text().splitlines():
        if (match := ROW.match(line)) is not None:
            name, kind, labels = match.groups()
            assert name not in found, f"{name} has two rows"
            found[name] = (kind, set(LABEL.findall(labels)))
    return found


def test_every_registered_metric_has_a_row_with_its_type_and_labels() -> None:
    telemetry = daemon_telemetry()
    documented = rows()
    labels = label_names(telemetry)
    for name, kind in families(telemetry).items():
        exposed = name + SUFFIXES[kind][0]
        assert exposed in documented, f"{exposed} is not documented in {DOC.name}"
        assert documented[exposed] == (kind, labels[name]), exposed
    assert len(documented) == len(families(telemetry))


def test_every_name_in_the_page_exists() -> None:
    exposed = {
        name + suffix
        for name, kind in families(daemon_telemetry()).items()
        for suffix in SUFFIXES[kind]
    }
    unknown = set(NAME.findall(DOC.read_text())) - exposed
    assert not unknown, f"{DOC.name} names metrics that do not exist: {sorted(unknown)}"
