"""Trace tenancy and sampling in a running daemon, on real PostgreSQL and the file store.

Tenants: spool records of three tenants (one written before tenants existed, with an empty
tenant) hold spans of one trace id; the daemon replays them at startup through the trace core
and writer. Each tenant then reads back exactly its own spans, by id and by search, and no
other tenant finds them. Sampling: with ratio 0.5, of 400 traces exported over gRPC exactly
those whose id's randomness (its rightmost 7 bytes) is at least the threshold
(1 - 0.5) * 2**56 are stored, each with all its spans.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts

from tests.conftest import RunningDaemon, make_config
from tests.integration.test_traces import export_raw, wait_stored
from tests.trace_payloads import span, trace_request
from tidegate.intake import request_hash
from tidegate.spool import Spool, SpoolRecord
from tidegate.traces import TraceMatch, TraceNotFoundError, get_trace, search

# One trace id stored by three tenants, and one only `acme` stores.
SHARED = bytes.fromhex("5a" * 9 + "12345678abcdef")
ACME_ONLY = bytes.fromhex("5a" * 9 + "00000000000001")
THRESHOLD_AT_HALF = 2**55  # (1 - 0.5) * 2**56: ratio 0.5 keeps randomness from here up


def kept_at_half(trace_id: bytes) -> bool:
    return int.from_bytes(trace_id[9:], "big") >= THRESHOLD_AT_HALF


@pytest.fixture
def tenants_daemon(database_dsn: str, tmp_path: Path) -> Iterator[RunningDaemon]:
    """A daemon started over a trace spool holding requests of tenants acme, bolt and ""."""
    acme = [span(SHARED, 1, "acme-root"), span(SHARED, 2, "acme-child", 1)]
    records = [
        ("acme", trace_request("api", acme)),
        ("bolt", trace_request("web", [span(SHARED, 1, "bolt-root")])),
        ("", trace_request("api", [span(SHARED, 1, "old-root")])),
        ("acme", trace_request("api", [span(ACME_ONLY, 7, "acme-only")])),
    ]

    async def write() -> None:
        spool = Spool(tmp_path / "spool" / "traces")
        for seq, (tenant, body) in enumerate(records, start=1):
            digest = request_hash("traces", tenant, body)
            await spool.append(SpoolRecord(seq, time.time_ns(), tenant, digest, body))
        await spool.close()

    asyncio.run(write())
    config = make_config(database_dsn, tmp_path)
    config.traces.block_max_age_seconds = 0.1
    running = RunningDaemon(config)
    try:
        wait_stored(running, 5)
        yield running
    finally:
        running.stop()


def names(document: dict[str, Any]) -> list[str]:
    return sorted(
        span["name"]
        for rs in document["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    )


def read(daemon: RunningDaemon, trace_id: bytes, **tenant: str) -> list[str]:
    async def run() -> list[str]:
        conn = await asyncpg.connect(daemon.daemon.dsn)
        try:
            assert daemon.daemon.store is not None
            return names(await get_trace(conn, daemon.daemon.store, trace_id.hex(), **tenant))
        finally:
            await conn.close()

    return daemon.call(run())


def found(daemon: RunningDaemon, **tenant: str) -> list[tuple[str, int, str, str | None]]:
    async def run() -> list[TraceMatch]:
        conn = await asyncpg.connect(daemon.daemon.dsn)
        try:
            now = dt.datetime.now(dt.UTC)
            return await search(
                conn, start=now - dt.timedelta(hours=1), end=now + dt.timedelta(hours=1), **tenant
            )
        finally:
            await conn.close()

    return sorted((m.trace_id, m.span_count, m.service, m.root_name) for m in daemon.call(run()))


def test_each_tenant_reads_exactly_its_own_spans_of_a_shared_trace_id(
    tenants_daemon: RunningDaemon,
) -> None:
    daemon = tenants_daemon
    rows = daemon.query(
        "SELECT tenant, trace_id, span_count FROM trace_index ORDER BY tenant, trace_id"
    )
    assert [tuple(r) for r in rows] == [
        ("acme", ACME_ONLY, 1),
        ("acme", SHARED, 2),
        ("bolt", SHARED, 1),
        ("default", SHARED, 1),
    ]
    assert read(daemon, SHARED, tenant="acme") == ["acme-child", "acme-root"]
    assert read(daemon, SHARED, tenant="bolt") == ["bolt-root"]
    assert read(daemon, SHARED, tenant="default") == ["old-root"]
    assert read(daemon, SHARED) == ["old-root"], "the default tenant when none is named"
    assert read(daemon, ACME_ONLY, tenant="acme") == ["acme-only"]
    for trace_id, tenant in [(ACME_ONLY, "bolt"), (ACME_ONLY, "default"), (SHARED, "nobody")]:
        with pytest.raises(TraceNotFoundError, match=f"trace {trace_id.hex()} not found"):
            read(daemon, trace_id, tenant=tenant)

    assert found(daemon, tenant="acme") == [
        (ACME_ONLY.hex(), 1, "api", "acme-only"),
        (SHARED.hex(), 2, "api", "acme-root"),
    ]
    assert found(daemon, tenant="bolt") == [(SHARED.hex(), 1, "web", "bolt-root")]
    assert found(daemon) == [(SHARED.hex(), 1, "api", "old-root")]
    assert found(daemon, tenant="nobody") == []

    # The HTTP API reads the default tenant.
    with urllib.request.urlopen(f"{daemon.http_url}/api/traces/{SHARED.hex()}", timeout=10) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{daemon.http_url}/api/traces/{ACME_ONLY.hex()}", timeout=10)
    assert refused.value.code == 404
    refused.value.close()


def test_the_trace_commands_take_a_tenant(tenants_daemon: RunningDaemon) -> None:
    daemon = tenants_daemon

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tidegate.cli", *args, "--dsn", daemon.daemon.dsn,
             "--data-dir", daemon.daemon.config.data_dir],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    acme = cli("trace", SHARED.hex(), "--tenant", "acme")
    assert acme.returncode == 0, acme.stderr
    assert "2 spans" in acme.stdout.splitlines()[0]
    assert "acme-root" in acme.stdout
    assert "bolt-root" not in acme.stdout
    missing = cli("trace", ACME_ONLY.hex(), "--tenant", "bolt")
    assert missing.returncode == 1
    assert f"trace {ACME_ONLY.hex()} not found" in missing.stderr
    default = cli("trace", SHARED.hex())
    assert default.returncode == 0, default.stderr
    assert "old-root" in default.stdout
    assert "acme-root" not in default.stdout
    for tenant, present, absent in [
        ("acme", [SHARED, ACME_ONLY], []),
        ("bolt", [SHARED], [ACME_ONLY]),
        ("nobody", [], [SHARED, ACME_ONLY]),
    ]:
        result = cli("traces", "search", "--start=-1h", "--tenant", tenant)
        assert result.returncode == 0, result.stderr
        assert all(t.hex() in result.stdout for t in present), (tenant, result.stdout)
        assert not any(t.hex() in result.stdout for t in absent), (tenant, result.stdout)


@pytest.fixture
def daemon(database_dsn: str, tmp_path: Path) -> Iterator[RunningDaemon]:
    config = make_config(database_dsn, tmp_path)
    config.traces.block_max_age_seconds = 0.1
    running = RunningDaemon(config)
    try:
        yield running
    finally:
        running.stop()


def counter(daemon: RunningDaemon, name: str) -> float | None:
    value: float | None = daemon.daemon.telemetry.registry.get_sample_value(name)
    return value


def test_sampling_at_one_half_stores_exactly_the_traces_from_its_threshold_up_whole(
    daemon: RunningDaemon,
) -> None:
    rng = random.Random(20261127)
    trace_ids = [rng.randbytes(16) for _ in range(400)]
    # The threshold itself and the value one below it, on either side of the boundary.
    trace_ids[:2] = [bytes.fromhex("5a" * 9) + r.to_bytes(7, "big") for r in (2**55, 2**55 - 1)]
    kept = {t for t in trace_ids if kept_at_half(t)}
    assert trace_ids[0] in kept
    assert trace_ids[1] not in kept
    assert 150 < len(kept) < 250
    daemon.daemon.trace_core.set_sampling({"checkout": 0.5, "payments": 0.5}, default=0.0)
    # Each trace: a root from checkout, then two children from payments in a later request.
    for batch in range(0, 400, 50):
        ids = trace_ids[batch : batch + 50]
        roots = [span(t, 1, "pay") for t in ids]
        children = [span(t, c, f"charge-{c}", 1) for t in ids for c in (2, 3)]
        for request in (trace_request("checkout", roots), trace_request("payments", children)):
            answer = ts.ExportTraceServiceResponse.FromString(export_raw(daemon, request))
            assert not answer.HasField("partial_success"), "sampling is not an error"
    wait_stored(daemon, 3 * len(kept))
    rows = daemon.query("SELECT trace_id, sum(span_count) AS n FROM trace_index GROUP BY 1")
    assert {r["trace_id"]: r["n"] for r in rows} == dict.fromkeys(kept, 3)
    assert counter(daemon, "tidegate_spans_accepted_total") == 3 * len(kept)
    sampled_out = daemon.daemon.telemetry.registry.get_sample_value(
        "tidegate_spans_sampled_out_total", {"tenant": "default"}
    )
    assert sampled_out == 3 * (400 - len(kept))
    assert counter(daemon, "tidegate_spans_rejected_total") == 0

    # Raised in place, without a restart: a trace dropped at 0.5 is kept now.
    dropped = next(t for t in trace_ids if t not in kept)
    daemon.daemon.trace_core.set_sampling({}, default=1.0)
    export_raw(daemon, trace_request("checkout", [span(dropped, 9, "again")]))
    wait_stored(daemon, 3 * len(kept) + 1)
    assert read(daemon, dropped) == ["again"]
