"""End-to-end benchmark behind `make bench`: tidegate against the JSONB baseline, same load.

Scenario: the mixed 10k-series workload (``otlp_payloads``) replayed by ``loadgen`` for
``--duration`` seconds against each target in turn, both writing into the same PostgreSQL; then
each target is stopped with SIGTERM, allowed to flush what it acknowledged, and its stored points
are counted. Prints one table and optionally writes the figures as JSON.

    python -m bench.e2e --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg

if __package__ in (None, ""):
    # Run as `python bench/e2e.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import LoadResult, format_result, run_load
from bench.otlp_payloads import build_requests
from bench.procwatch import (
    RssSampler,
    children_cpu_seconds,
    free_port,
    stop_process,
    tree_cpu_seconds,
    wait_http_ok,
    wait_tcp_open,
)

TIDEGATE_COUNT = (
    "SELECT (SELECT coalesce(sum(point_count), 0) FROM point_chunks)"
    " + (SELECT count(*) FROM histogram_points) + (SELECT count(*) FROM exp_histogram_points)"
    " + (SELECT count(*) FROM summary_points)"
)
BASELINE_COUNT = "SELECT count(*) FROM baseline_points"
READY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 300.0
BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class TargetFigures:
    """What one target did under the load; ``*_per_m`` are CPU seconds per million points."""

    name: str
    acked_points: int
    stored_points: int
    load_s: float
    drain_s: float
    acked_per_s: float
    stored_per_s: float
    p50_ms: float
    p99_ms: float
    peak_rss_mib: float
    cpu_s_per_m: float | None
    postgres_cpu_s_per_m: float | None
    exit_code: int
    retries: int
    failures: dict[str, int]
    generator_cpu_share: list[float]


async def _count(dsn: str, sql: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(sql))
    except asyncpg.UndefinedTableError:
        return 0  # the target has not created its tables yet: nothing stored
    finally:
        await connection.close()


def count_points(dsn: str, sql: str) -> int:
    """Run a count query against ``dsn``."""
    return asyncio.run(_count(dsn, sql))


def run_target(
    name: str,
    command: list[str],
    wait_ready: Callable[[subprocess.Popen[bytes]], None],
    count_sql: str,
    dsn: str,
    postgres_pid: int | None,
    target: str,
    args: argparse.Namespace,
    log_path: Path,
) -> TargetFigures:
    """Start ``command``, load it, stop it, count what it stored; always stops the process."""
    stored_before = count_points(dsn, count_sql)
    # Build just before the run so the points' timestamps are seconds old when replayed.
    payloads = build_requests(args.pool, args.points_per_request, args.series)
    print(f"[{name}] starting: {' '.join(command)} (log {log_path})", flush=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        with RssSampler(process.pid) as sampler:
            try:
                wait_ready(process)
            except (RuntimeError, TimeoutError):
                # The log is deleted with the work directory: show why it never became ready.
                print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
                raise
            pg_cpu_start = tree_cpu_seconds(postgres_pid) if postgres_pid else 0.0
            cpu_start = tree_cpu_seconds(process.pid)
            load: LoadResult = run_load(
                target, payloads, args.duration, args.streams, args.processes
            )
            print(f"[{name}] {format_result(load)}", flush=True)
            reaped_before = children_cpu_seconds()
            drain_started = time.monotonic()
            exit_code = stop_process(process, DRAIN_TIMEOUT_S)
            drain_s = time.monotonic() - drain_started
        # The whole lifetime's CPU, exact from rusage once reaped, less what start-up used.
        cpu_s = children_cpu_seconds() - reaped_before - cpu_start
        pg_cpu_s = tree_cpu_seconds(postgres_pid) - pg_cpu_start if postgres_pid else None
    finally:
        stop_process(process, 10)
    stored = count_points(dsn, count_sql) - stored_before
    per_m = 1e6 / stored if stored else None
    return TargetFigures(
        name=name,
        acked_points=load.points_acked,
        stored_points=stored,
        load_s=load.duration_s,
        drain_s=drain_s,
        acked_per_s=load.acked_per_s,
        stored_per_s=stored / load.duration_s if load.duration_s else 0.0,
        p50_ms=load.latency_ms(0.5),
        p99_ms=load.latency_ms(0.99),
        peak_rss_mib=sampler.peak_bytes / 2**20,
        cpu_s_per_m=cpu_s * per_m if per_m else None,
        postgres_cpu_s_per_m=pg_cpu_s * per_m if per_m and pg_cpu_s is not None else None,
        exit_code=exit_code,
        retries=load.retries,
        failures=load.failures,
        generator_cpu_share=load.cpu_share,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(figures: list[TargetFigures]) -> None:
    """Print the one comparison table (and the ratio when both targets ran)."""
    rows: list[tuple[str, Callable[[TargetFigures], str]]] = [
        ("points/s acknowledged", lambda f: f"{f.acked_per_s:,.0f}"),
        ("points/s stored", lambda f: f"{f.stored_per_s:,.0f}"),
        ("export latency p50 (ms)", lambda f: f"{f.p50_ms:.1f}"),
        ("export latency p99 (ms)", lambda f: f"{f.p99_ms:.1f}"),
        ("peak RSS (MiB)", lambda f: f"{f.peak_rss_mib:.0f}"),
        ("CPU s per M points", lambda f: _fmt(f.cpu_s_per_m, ".2f")),
        ("PostgreSQL CPU s per M points", lambda f: _fmt(f.postgres_cpu_s_per_m, ".2f")),
        ("drain after SIGTERM (s)", lambda f: f"{f.drain_s:.1f}"),
        (
            "stored == acknowledged",
            lambda f: (
                "yes"
                if f.stored_points == f.acked_points
                else f"NO ({f.stored_points - f.acked_points:+,})"
            ),
        ),
        ("exit code", lambda f: str(f.exit_code)),
        ("retries (UNAVAILABLE/EXHAUSTED)", lambda f: str(f.retries)),
        ("generator CPU share", lambda f: "/".join(f"{s:.0%}" for s in f.generator_cpu_share)),
    ]
    print()
    print(f"{'':32}" + "".join(f"{f.name:>16}" for f in figures))
    for label, cell in rows:
        print(f"{label:32}" + "".join(f"{cell(f):>16}" for f in figures))
    by_name = {f.name: f for f in figures}
    if {"tidegate", "baseline"} <= by_name.keys() and by_name["baseline"].stored_per_s:
        ratio = by_name["tidegate"].stored_per_s / by_name["baseline"].stored_per_s
        print(f"{'stored points/s tidegate/baseline':32}{ratio:>16.2f}")


def _tidegate_command(args: argparse.Namespace) -> str:
    sibling = Path(sys.executable).with_name("tidegate")
    found = args.tidegate or (str(sibling) if sibling.exists() else shutil.which("tidegate"))
    if not found:
        raise SystemExit("no `tidegate` executable: install the project or pass --tidegate")
    return found


def run(args: argparse.Namespace, workdir: Path, dsn: str, postgres_pid: int | None) -> None:
    """Run the selected targets one after the other against ``dsn``."""
    figures: list[TargetFigures] = []
    if args.only in (None, "tidegate"):
        grpc_port, http_port = free_port(), free_port()
        command = [
            _tidegate_command(args),
            "serve",
            "--dsn",
            dsn,
            "--data-dir",
            str(workdir / "tidegate-data"),
            "--grpc-listen",
            f"127.0.0.1:{grpc_port}",
            "--http-listen",
            f"127.0.0.1:{http_port}",
        ]
        ready_url = f"http://127.0.0.1:{http_port}/readyz"
        figures.append(
            run_target(
                "tidegate",
                command,
                lambda p: wait_http_ok(ready_url, p, READY_TIMEOUT_S),
                TIDEGATE_COUNT,
                dsn,
                postgres_pid,
                f"127.0.0.1:{grpc_port}",
                args,
                workdir / "tidegate.log",
            )
        )
    if args.only in (None, "baseline"):
        port = free_port()
        command = [
            sys.executable,
            str(BENCH_DIR / "baselines" / "jsonb_baseline.py"),
            "--dsn",
            dsn,
            "--listen",
            f"127.0.0.1:{port}",
        ]
        figures.append(
            run_target(
                "baseline",
                command,
                lambda p: wait_tcp_open(port, p, READY_TIMEOUT_S),
                BASELINE_COUNT,
                dsn,
                postgres_pid,
                f"127.0.0.1:{port}",
                args,
                workdir / "baseline.log",
            )
        )
    print_table(figures)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")


# Scenario: mixed 10k-series, tidegate then the JSONB baseline, same load and PostgreSQL.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="existing PostgreSQL (default: a throwaway embedded one)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per target")
    parser.add_argument("--streams", type=int, default=8, help="streams per generator process")
    parser.add_argument("--processes", type=int, default=2, help="generator processes")
    parser.add_argument("--pool", type=int, default=1000, help="distinct requests to replay")
    parser.add_argument("--points-per-request", type=int, default=1000)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--only", choices=("tidegate", "baseline"), help="run one target only")
    parser.add_argument("--tidegate", help="tidegate executable (default: beside python)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args()

    # Embedded PostgreSQL runs as another user when we are root: its parent must be traversable.
    workdir = Path(tempfile.mkdtemp(prefix="tidegate-bench-", dir="/tmp"))
    os.chmod(workdir, 0o755)
    server: Any = None
    try:
        if args.dsn:
            dsn, postgres_pid = args.dsn, None
        else:
            # The daemon's own helper: the same server, and its warnings handled the same way.
            from tidegate.database import start_embedded_server

            server = start_embedded_server(workdir / "pg", keep_data=False)
            dsn, postgres_pid = server.get_uri(), server.get_pid()
        run(args, workdir, dsn, postgres_pid)
    finally:
        if server is not None:
            server.cleanup()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Every process and the work directory were already cleaned up by the finally blocks.
        print("interrupted", file=sys.stderr)
        sys.exit(130)
