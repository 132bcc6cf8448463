"""SIGTERM under load: the daemon exits 0 within its gRPC grace period (plus a margin for the
drain), answers requests that arrive while it stops with UNAVAILABLE (the generator retries
them against the next daemon), and loses nothing it acknowledged."""

from __future__ import annotations

import time
from collections import Counter

import grpc
import pytest

from tests.faults.conftest import MakeScenario
from tests.faults.harness import METRICS, TRACES

pytestmark = pytest.mark.timeout(90)
# Beyond the gRPC grace: the writers' final flush and the process's own exit.
EXIT_MARGIN_SECONDS = 5.0


def test_sigterm_under_load_exits_cleanly_and_loses_nothing(
    make_scenario: MakeScenario, database_dsn: str
) -> None:
    scenario = make_scenario(database_dsn)
    daemon = scenario.daemon
    daemon.start()
    scenario.generator.start()
    scenario.generator.wait_acknowledged(METRICS, 2000)
    scenario.generator.wait_acknowledged(TRACES, 200)
    scenario.run_load(2.0)

    signalled = time.monotonic()
    result = daemon.terminate()
    exited = signalled + result.seconds
    during = scenario.ledger.answers_between(signalled, exited)
    codes = Counter(answer.code.name for answer in during)
    print(f"\nSIGTERM: exit {result.code} after {result.seconds:.2f} s; answers meanwhile {codes}")
    for answer in during:
        if answer.code is not grpc.StatusCode.UNAVAILABLE:
            print(f"  {answer.signal} {answer.code.name}: {answer.details!r}")

    scenario.run_load(0.5)  # clients retry against the stopped daemon
    daemon.start()
    scenario.run_load(1.5)
    report = scenario.finish()

    grace = daemon.settings.effective_grace_seconds
    problems = report.problems()
    if result.code != 0:
        problems.append(f"exit code {result.code}")
    if result.seconds > grace + EXIT_MARGIN_SECONDS:
        problems.append(
            f"exit took {result.seconds:.1f} s (grace {grace} s + margin {EXIT_MARGIN_SECONDS} s)"
        )
    if set(codes) - {grpc.StatusCode.UNAVAILABLE.name}:
        problems.append(f"requests during shutdown were answered {dict(codes)}")
    assert not problems, (
        "; ".join(problems) + f"\n{report.describe()}\ndaemon output:\n{result.output_tail}"
    )
