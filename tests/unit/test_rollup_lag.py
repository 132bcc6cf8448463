"""The rollup lag gauge: the core's oldest open window, and how overdue it is."""

from __future__ import annotations

import pytest

from tests import payloads as p
from tidegate._core import CoreLimits, MetricsCore, RollupSettings
from tidegate.metrics_writer import rollup_lag_seconds

S = 1_000_000_000
WINDOW = 60
LATENESS = 60


def test_the_core_reports_the_oldest_open_window_until_a_flush_takes_it() -> None:
    core = MetricsCore(CoreLimits(), RollupSettings(window_seconds=WINDOW, lateness_seconds=30))
    assert core.oldest_open_window_start_ns is None
    now = p.now_ns()
    old, recent = now - 600 * S, now - 5 * S
    points = [p.number_point(1.0, time=recent), p.number_point(2.0, time=old)]
    core.ingest(p.request([p.gauge("g", points)]).SerializeToString(), now)
    assert core.oldest_open_window_start_ns == old - old % (WINDOW * S)

    # The old window is overdue and closes; the recent one stays open.
    assert core.take_batch(now) is not None
    assert core.oldest_open_window_start_ns == recent - recent % (WINDOW * S)
    assert core.take_batch(now, flush_all=True) is not None
    assert core.oldest_open_window_start_ns is None


@pytest.mark.parametrize(
    ("oldest_start_s", "now_s", "lag"),
    [
        (None, 1_000, 0.0),  # no window open
        (1_000, 1_000, 0.0),  # still being filled
        (1_000, 1_120, 0.0),  # due exactly now: end 1060 + lateness 60
        (1_000, 1_121, 1.0),
        (1_000, 1_420, 300.0),  # the writer has not flushed for five minutes
    ],
)
def test_lag_is_how_long_ago_the_oldest_window_was_due(
    oldest_start_s: int | None, now_s: int, lag: float
) -> None:
    oldest = None if oldest_start_s is None else oldest_start_s * S
    assert rollup_lag_seconds(oldest, now_s * S, WINDOW, LATENESS) == lag


def test_lag_keeps_sub_second_precision() -> None:
    assert rollup_lag_seconds(0, 120 * S + S // 4, WINDOW, LATENESS) == 0.25
