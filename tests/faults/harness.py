"""The fault-test harness in one import: a real daemon process, a stamped load generator with
its ledger, a checker of what reached storage, and a fault-injecting TCP proxy.

A scenario starts the daemon, starts the load, injects its faults (SIGKILL, SIGTERM,
PostgreSQL stops, a cut after COMMIT, an unreachable object store), then :meth:`Scenario.finish`
stops the load, waits until storage stops changing, stops the daemon with SIGTERM and returns
a :class:`FaultReport` whose :meth:`~FaultReport.assert_exactly_once` fails with the missing
and duplicate counts.

Run: ``.venv/bin/pytest tests/faults -q -s`` (``-s`` shows each report). The daemon's TOML
carries the ``[spool]`` section and ``grpc.shutdown_grace_seconds`` unless
``TIDEGATE_TEST_SPOOL=0``, which is how to run against a daemon that does not know them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tests.faults.checker import Checker
from tests.faults.daemon_process import (
    SPOOL_DEFAULT,
    DaemonProcess,
    DaemonSettings,
    ExitResult,
    S3Settings,
)
from tests.faults.generator import Generator, Workload
from tests.faults.ledger import METRICS, TRACES, Answer, BatchRecord, Ledger, Outcome, percentile
from tests.faults.pg_faults import Action, ArmedFault, Trigger
from tests.faults.postgres import OwnPostgres, upstream_of, via_proxy
from tests.faults.report import FaultReport
from tests.faults.tcp_proxy import TcpFaultProxy, Upstream


@dataclass
class Scenario:
    """One daemon configuration under one load, and the means to check it."""

    daemon: DaemonProcess
    ledger: Ledger
    generator: Generator
    checker: Checker
    more_generators: list[Generator] = field(default_factory=list)

    def add_generator(self, workload: Workload) -> Generator:
        """A second load into the same ledger (give it other ``first_generator`` ids); started
        here, stopped by :meth:`finish`, aborted at teardown like the first."""
        generator = Generator(self.daemon.grpc_target, self.ledger, workload)
        self.more_generators.append(generator)
        generator.start()
        return generator

    @property
    def generators(self) -> list[Generator]:
        return [self.generator, *self.more_generators]

    def run_load(self, seconds: float) -> None:
        """Let the load run (the daemon up or down) for ``seconds``."""
        time.sleep(seconds)

    def finish(self, drain_timeout: float = 30.0) -> FaultReport:
        """Start the daemon if it is down (so batches in flight get their answer), stop the
        load, wait until storage stops changing, SIGTERM the daemon and check storage; prints
        the report."""
        if not self.daemon.running:
            self.daemon.start()
        for generator in self.generators:
            generator.stop()
        waited = self.checker.wait_stable(self.ledger, drain_timeout)
        result = self.daemon.terminate()
        report = self.checker.check(self.ledger)
        print(
            f"\nspool section: {'on' if self.daemon.settings.spool else 'off'}; drained in "
            f"{waited:.1f} s; final SIGTERM: exit {result.code} after {result.seconds:.1f} s"
        )
        print(report.describe())
        return report


__all__ = [
    "METRICS",
    "SPOOL_DEFAULT",
    "TRACES",
    "Action",
    "Answer",
    "ArmedFault",
    "BatchRecord",
    "Checker",
    "DaemonProcess",
    "DaemonSettings",
    "ExitResult",
    "FaultReport",
    "Generator",
    "Ledger",
    "Outcome",
    "OwnPostgres",
    "S3Settings",
    "Scenario",
    "TcpFaultProxy",
    "Trigger",
    "Upstream",
    "Workload",
    "percentile",
    "upstream_of",
    "via_proxy",
]
