"""SIGKILL under load, three times at random moments: every acknowledged point and span is
stored exactly once after the restarts (the spool replays what was not committed)."""

from __future__ import annotations

import random
import time

import pytest

from tests.faults.conftest import MakeScenario
from tests.faults.harness import METRICS, TRACES

pytestmark = pytest.mark.timeout(90)
KILLS = 3


def test_sigkill_under_load_loses_and_duplicates_nothing(
    make_scenario: MakeScenario, database_dsn: str
) -> None:
    seed = time.time_ns()
    rng = random.Random(seed)
    print(f"\nrandom seed {seed}")
    scenario = make_scenario(database_dsn)
    scenario.daemon.start()
    scenario.generator.start()
    scenario.generator.wait_acknowledged(METRICS, 2000)
    scenario.generator.wait_acknowledged(TRACES, 200)
    for _ in range(KILLS):
        scenario.run_load(rng.uniform(1.0, 3.0))
        scenario.daemon.kill()
        scenario.run_load(rng.uniform(0.2, 1.0))  # clients retry against a dead port
        scenario.daemon.start()
    scenario.run_load(1.0)
    report = scenario.finish()
    assert scenario.daemon.starts == KILLS + 1
    report.assert_exactly_once()
