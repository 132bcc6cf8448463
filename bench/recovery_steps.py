"""Pieces of ``bench_recovery``: a spool built as the daemon writes it, a PostgreSQL the
benchmark stops and starts, the daemon process, its /metrics and its log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from bench.loadgen import SEND_NUMBER_TAG, _varint
from bench.otlp_payloads import Payload
from bench.procwatch import free_port, stop_process
from tidegate import schema
from tidegate.database import start_embedded_server
from tidegate.intake import request_hash
from tidegate.spool import Spool, SpoolRecord

# Points of every kind the mixed workload writes: histograms have chunks of their own.
STORED_POINTS_SQL = (
    "SELECT (SELECT coalesce(sum(point_count), 0) FROM point_chunks)"
    " + (SELECT coalesce(sum(point_count), 0) FROM histogram_chunks)"
    " + (SELECT count(*) FROM exp_histogram_points) + (SELECT count(*) FROM summary_points)"
)
SEGMENT_BYTES = 64 * 2**20  # the daemon's default spool.segment_bytes
APPENDS_IN_FLIGHT = 64  # concurrent appends while building: one write per group


@dataclass
class SpoolBuild:
    """What ``build_spool`` wrote."""

    records: int
    points: int
    bytes: int
    segments: int
    seconds: float


def spooled_request(payload: Payload, seq: int) -> bytes:
    """The request a load generator would send as its ``seq``-th: the pool's bytes plus the
    unknown field that makes every send distinct (``loadgen._stream``)."""
    return payload.body + SEND_NUMBER_TAG + _varint(seq)


async def _fill(spool: Spool, pool: list[Payload], target_bytes: int) -> tuple[int, int]:
    seq = points = 0
    while spool.size_bytes < target_bytes:
        appends = []
        for _ in range(APPENDS_IN_FLIGHT):
            seq += 1
            payload = pool[(seq - 1) % len(pool)]
            body = spooled_request(payload, seq)
            digest = request_hash("metrics", "", body)
            appends.append(spool.append(SpoolRecord(seq, time.time_ns(), "", digest, body)))
            points += payload.points
        await asyncio.gather(*appends)
    await spool.close()
    return seq, points


def build_spool(directory: Path, pool: list[Payload], target_bytes: int) -> SpoolBuild:
    """Append seqs 1.. to a ``Spool`` in ``directory`` until it holds ``target_bytes``, as the
    daemon appends accepted metrics requests (tenant "", its request hash, its ingest time);
    then fsync every segment and drop it from the page cache, so the replay reads the disk."""
    started = time.monotonic()
    # fsync once per file at the end instead of per group: the same bytes, faster to build.
    spool = Spool(directory, segment_bytes=SEGMENT_BYTES, fsync=False)
    records, points = asyncio.run(_fill(spool, pool, target_bytes))
    segments = sorted(directory.glob("*.seg"))
    for path in segments:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return SpoolBuild(
        records=records,
        points=points,
        bytes=sum(path.stat().st_size for path in segments),
        segments=len(segments),
        seconds=time.monotonic() - started,
    )


def segment_count(directory: Path) -> int:
    return sum(1 for _ in directory.glob("*.seg"))


class Postgres:
    """An embedded PostgreSQL whose cluster survives ``stop()``, so ``start()`` brings the same
    database back (as ``tests/integration/test_database_outage.py`` does)."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None
        self.dsn = ""

    def start(self) -> None:
        self._server = start_embedded_server(self.pgdata, keep_data=True)
        # The socket directory, and so the DSN, is the same after a restart.
        self.dsn = self._server.get_uri()

    def stop(self) -> None:
        """``pg_ctl -w stop`` (fast mode: open sessions are terminated)."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()


async def _fetch(dsn: str, sql: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(sql))
    finally:
        await connection.close()


def stored_points(dsn: str) -> int:
    """Points stored in PostgreSQL, every kind."""
    return asyncio.run(_fetch(dsn, STORED_POINTS_SQL))


async def _migrate(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await schema.apply(connection)
    finally:
        await connection.close()


def migrate(dsn: str) -> None:
    """Create the schema, as the daemon's first start does: a restart finds it in place."""
    asyncio.run(_migrate(dsn))


def tidegate_executable() -> str:
    sibling = Path(sys.executable).with_name("tidegate")
    found = str(sibling) if sibling.exists() else shutil.which("tidegate")
    if not found:
        raise SystemExit("no `tidegate` executable beside python or on PATH")
    return found


@dataclass
class DaemonProcess:
    """A ``tidegate serve`` on free loopback ports, its output in ``log_path``."""

    process: subprocess.Popen[bytes]
    http_url: str
    grpc_target: str
    log_path: Path
    started_monotonic: float
    started_wall: float

    def stop(self, timeout_s: float) -> int:
        return stop_process(self.process, timeout_s)


def start_daemon(dsn: str, data_dir: Path, log_path: Path) -> DaemonProcess:
    grpc_port, http_port = free_port(), free_port()
    command = [
        tidegate_executable(),
        "serve",
        "--dsn",
        dsn,
        "--data-dir",
        str(data_dir),
        "--grpc-listen",
        f"127.0.0.1:{grpc_port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
    ]
    print(f"starting: {' '.join(command)} (log {log_path})", flush=True)
    with log_path.open("wb") as log:
        started_wall, started = time.time(), time.monotonic()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return DaemonProcess(
        process,
        f"http://127.0.0.1:{http_port}",
        f"127.0.0.1:{grpc_port}",
        log_path,
        started,
        started_wall,
    )


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The status ``url`` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class Scrape:
    """The daemon's /metrics figures the benchmarks follow (sums over labels)."""

    accepted: float = 0.0
    stored: float = 0.0
    spool_bytes: float = 0.0
    buffered: float = 0.0
    circuit: float = 0.0  # the metrics sink: 0 closed, 1 open, 2 half-open
    replayed: float = 0.0


def scrape(http_url: str, timeout_s: float = 5.0) -> Scrape | None:
    """Read /metrics; None when it does not answer in time."""
    try:
        with urllib.request.urlopen(f"{http_url}/metrics", timeout=timeout_s) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    figures = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "tidegate_points_accepted_total":
                figures.accepted += value
            elif name == "tidegate_points_stored_total":
                figures.stored += value
            elif name == "tidegate_spool_bytes":
                figures.spool_bytes += value
            elif name == "tidegate_buffered_points":
                figures.buffered += value
            elif name == "tidegate_sink_circuit_state" and labels.get("sink") == "metrics":
                figures.circuit = value
            elif name == "tidegate_spool_replayed_records_total":
                figures.replayed += value
    return figures


# "2026-11-27 12:49:01,123 WARNING tidegate.metrics_writer: PostgreSQL write failed (...)"
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): (.*)$")


@dataclass
class LogLine:
    at_wall: float
    level: str
    logger: str
    message: str


def log_lines(path: Path) -> Iterator[LogLine]:
    """The daemon's log lines (continuation lines, e.g. tracebacks, are left out)."""
    for line in path.read_text(errors="replace").splitlines():
        match = _LOG_LINE.match(line)
        if match:
            stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            yield LogLine(stamp, match[2], match[3], match[4])


def first_line_at(path: Path, pattern: str, started_wall: float) -> float | None:
    """Seconds from ``started_wall`` to the first log line whose message matches."""
    compiled = re.compile(pattern)
    for line in log_lines(path):
        if compiled.search(line.message):
            return line.at_wall - started_wall
    return None


def warnings_summary(path: Path, limit: int = 12) -> list[str]:
    """WARNING and ERROR lines, counted by message with its numbers blanked out."""
    counts: dict[str, tuple[int, str]] = {}
    for line in log_lines(path):
        if line.level in ("WARNING", "ERROR", "CRITICAL"):
            key = f"{line.level} {line.logger}: " + re.sub(r"\d+(\.\d+)?", "N", line.message)
            seen, example = counts.get(key, (0, line.message))
            counts[key] = (seen + 1, example)
    ordered = sorted(counts.items(), key=lambda item: -item[1][0])
    return [f"{n} x {key.split(':', 1)[0]}: {example[:300]}" for key, (n, example) in ordered][
        :limit
    ]


def wait_until(condition: Any, timeout_s: float, interval_s: float = 0.1) -> float | None:
    """Poll ``condition`` until it is true; the monotonic time it was, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if condition():
                return time.monotonic()
        time.sleep(interval_s)
    return None


@dataclass
class Sample:
    """One /metrics reading during the outage run; ``t`` in seconds from the load's start."""

    t: float
    accepted: float
    stored: float
    spool_bytes: float
    buffered: float
    circuit: float


def value_at(samples: list[Sample], t: float, field: str) -> float:
    """``field`` of the last sample at or before ``t`` (the first sample's, before it)."""
    chosen = samples[0]
    for sample in samples:
        if sample.t > t:
            break
        chosen = sample
    return float(getattr(chosen, field))


def rate(samples: list[Sample], start: float, end: float, field: str = "accepted") -> float:
    """Mean growth per second of ``field`` between the samples nearest ``start`` and ``end``."""
    inside = [s for s in samples if start <= s.t <= end]
    if len(inside) < 2 or inside[-1].t <= inside[0].t:
        return 0.0
    grown = getattr(inside[-1], field) - getattr(inside[0], field)
    return float(grown) / (inside[-1].t - inside[0].t)


def first_time(samples: list[Sample], after: float, condition: Any) -> float | None:
    """Seconds after ``after`` of the first sample from then on meeting ``condition``."""
    for sample in samples:
        if sample.t >= after and condition(sample):
            return sample.t - after
    return None


_REPLAYED = re.compile(r"replayed (\d+) metrics requests from the spool in ([\d.]+) s")


def replay_seconds(path: Path) -> float | None:
    """The metrics replay's duration as the daemon logs it (0.1 s resolution)."""
    for line in log_lines(path):
        if match := _REPLAYED.match(line.message):
            return float(match[2])
    return None
