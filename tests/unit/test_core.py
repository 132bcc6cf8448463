"""The live settings of ``MetricsCore``: the window length of new windows and the per-tenant
active-series limits, as Python sees them."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc

from tests import payloads
from tidegate._core import CoreLimits, MetricsCore, RollupSettings


def make_core() -> MetricsCore:
    return MetricsCore(CoreLimits(), RollupSettings(window_seconds=60))


@pytest.mark.parametrize("seconds", [0, -60, 7, 7200])
def test_window_length_must_divide_an_hour(seconds: int) -> None:
    core = make_core()
    with pytest.raises(ValueError, match="must divide 3600"):
        core.set_window_seconds(seconds)
    assert core.window_seconds == 60


def test_window_length_changes_for_new_windows() -> None:
    core = make_core()
    core.set_window_seconds(60)
    assert core.window_seconds == 60
    core.set_window_seconds(300)
    assert core.window_seconds == 300


def test_limits_are_replaced_in_place() -> None:
    core = make_core()
    request = payloads.request(
        [payloads.gauge("cpu", [payloads.number_point(1.0, {"host": h}) for h in "abc"])]
    ).SerializeToString()
    core.set_series_limits({"acme": 1}, None)
    first = core.ingest(request, payloads.now_ns(), tenant="acme")
    assert (first.accepted_points, first.rejected_by_reason) == (1, {"series_limit": 2})
    partial = svc.ExportMetricsServiceResponse.FromString(first.response).partial_success
    assert partial.rejected_data_points == 2
    assert "tenant acme is at its limit of 1 active series" in partial.error_message
    core.set_series_limits({}, 2)
    second = core.ingest(request, payloads.now_ns(), tenant="acme")
    assert (second.accepted_points, second.rejected_points) == (2, 1)
    assert core.active_series("acme") == 2
    assert core.active_series("nobody") == 0
    checked = core.check(request, payloads.now_ns(), tenant="acme")
    assert (checked.accepted_points, checked.rejected_points) == (2, 1)
