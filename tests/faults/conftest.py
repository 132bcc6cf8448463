"""Fixtures of the fault tests: scenarios (daemon + load + checker) that are always torn down,
a PostgreSQL server a test may stop, and an S3 endpoint (moto) behind a fault proxy.

The session PostgreSQL server and its per-test databases (``database_dsn``) come from
``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import (
    Checker,
    DaemonProcess,
    DaemonSettings,
    Generator,
    Ledger,
    OwnPostgres,
    S3Settings,
    Scenario,
    TcpFaultProxy,
    Upstream,
    Workload,
)
from tests.integration.moto_s3 import REGION, running_moto_server

BUCKET = "tidegate-faults"

MakeScenario = Callable[..., Scenario]


@pytest.fixture
def make_scenario(tmp_path: Path) -> Iterator[MakeScenario]:
    """``make_scenario(dsn, checker_dsn=..., workload=..., s3_checker=..., **DaemonSettings
    fields)``: a scenario whose daemon is not started yet. Everything it started is stopped
    at the end of the test, whatever happened."""
    scenarios: list[Scenario] = []

    def make(
        dsn: str,
        *,
        checker_dsn: str | None = None,
        workload: Workload | None = None,
        s3_checker: S3Settings | None = None,
        **settings: Any,
    ) -> Scenario:
        daemon = DaemonProcess(
            DaemonSettings(data_dir=tmp_path / f"daemon{len(scenarios)}", dsn=dsn, **settings)
        )
        ledger = Ledger()
        scenario = Scenario(
            daemon=daemon,
            ledger=ledger,
            generator=Generator(daemon.grpc_target, ledger, workload),
            checker=Checker(
                checker_dsn or dsn,
                daemon.settings.trace_store_url(),
                s3_checker or daemon.settings.s3,
            ),
        )
        scenarios.append(scenario)
        return scenario

    try:
        yield make
    finally:
        for scenario in scenarios:
            try:
                for generator in scenario.generators:
                    generator.abort()
            finally:
                scenario.daemon.stop()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL server of this test's own, which it may stop and start."""
    server = OwnPostgres()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def moto_s3() -> Iterator[S3Settings]:
    """A moto S3 server with the bucket ``tidegate-faults``; its direct endpoint."""
    import boto3  # type: ignore[import-untyped]

    with running_moto_server() as endpoint:
        settings = S3Settings(endpoint_url=endpoint, region=REGION)
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
        ).create_bucket(Bucket=BUCKET)
        yield settings


@pytest.fixture
def proxy_to() -> Iterator[Callable[..., TcpFaultProxy]]:
    """``proxy_to(upstream, postgres=False)``: a fault proxy closed at the end of the test."""
    proxies: list[TcpFaultProxy] = []

    def make(upstream: Upstream, *, postgres: bool = False) -> TcpFaultProxy:
        proxy = TcpFaultProxy(upstream, postgres=postgres)
        proxies.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in proxies:
            proxy.close()
