"""Fixtures of the operations-kit tests: the Prometheus binaries."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import missing_dependency


@dataclass(frozen=True)
class PrometheusTools:
    promtool: str
    prometheus: str


def find_binary(name: str) -> str | None:
    # Debian's prometheus package installs both binaries in /usr/bin, which a minimal PATH
    # (sudo, cron) may lack.
    found = shutil.which(name) or shutil.which(name, path="/usr/bin")
    return str(Path(found).resolve()) if found else None


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    promtool, prometheus = find_binary("promtool"), find_binary("prometheus")
    if promtool is None or prometheus is None:
        missing_dependency("promtool or prometheus not found (Debian: apt-get install prometheus)")
    assert promtool is not None
    assert prometheus is not None
    return PrometheusTools(promtool=promtool, prometheus=prometheus)
