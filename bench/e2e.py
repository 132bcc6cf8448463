"""End-to-end benchmark behind `make bench`: tidegate, the JSONB baseline and a raw-receive ceiling.

Scenario: the mixed 10k-series workload (``otlp_payloads``) replayed by ``loadgen`` for
``--duration`` seconds against each target in turn, tidegate and the baseline writing into the
same PostgreSQL, the ceiling only counting bytes; then each target is stopped with SIGTERM,
allowed to flush what it acknowledged, and its stored points and the bytes its tables grew by
are counted. Prints one table and optionally writes the figures as JSON.

    python -m bench.e2e --duration 30
"""

from __future__ import annotations

import argparse
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

if __package__ in (None, ""):
    # Run as `python bench/e2e.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.e2e_sizes import (
    BASELINE_COUNT,
    BASELINE_TABLES,
    TIDEGATE_COUNT,
    TIDEGATE_TABLES,
    count_points,
    tables_bytes,
)
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

READY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 300.0
BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class TargetSpec:
    """How to start one target and what it stores: ``count_sql`` None means nothing."""

    name: str
    command: list[str]
    wait_ready: Callable[[subprocess.Popen[bytes]], None]
    address: str
    count_sql: str | None
    tables: tuple[str, ...] = ()


@dataclass
class TargetFigures:
    """What one target did under the load; ``*_per_m`` are CPU seconds per million points.

    A target that stores nothing (the ceiling) has ``stores`` False and ``stored_points`` equal
    to the acknowledged points.
    """

    name: str
    stores: bool
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
    bytes_per_point: float | None


def run_target(
    spec: TargetSpec,
    dsn: str,
    postgres_pid: int | None,
    args: argparse.Namespace,
    log_path: Path,
) -> TargetFigures:
    """Start the target, load it, stop it, count what it stored; always stops the process."""
    name, command = spec.name, spec.command
    stored_before = count_points(dsn, spec.count_sql) if spec.count_sql else 0
    bytes_before = tables_bytes(dsn, spec.tables)
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
                spec.wait_ready(process)
            except (RuntimeError, TimeoutError):
                # The log is deleted with the work directory: show why it never became ready.
                print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
                raise
            pg_cpu_start = tree_cpu_seconds(postgres_pid) if postgres_pid else 0.0
            cpu_start = tree_cpu_seconds(process.pid)
            load: LoadResult = run_load(
                spec.address, payloads, args.duration, args.streams, args.processes
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
    if spec.count_sql:
        stored = count_points(dsn, spec.count_sql) - stored_before
    else:
        stored = load.points_acked  # stores nothing: what it acknowledged is all it kept
    grown = tables_bytes(dsn, spec.tables) - bytes_before
    per_m = 1e6 / stored if stored else None
    return TargetFigures(
        name=name,
        stores=spec.count_sql is not None,
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
        bytes_per_point=grown / stored if spec.tables and stored else None,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _stored_cell(f: TargetFigures) -> str:
    if not f.stores:
        return "n/a (no store)"
    if f.stored_points == f.acked_points:
        return "yes"
    return f"NO ({f.stored_points - f.acked_points:+,})"


def print_table(figures: list[TargetFigures]) -> None:
    """Print the one comparison table and the stored points/s ratios of the targets that ran."""
    rows: list[tuple[str, Callable[[TargetFigures], str]]] = [
        ("points/s acknowledged", lambda f: f"{f.acked_per_s:,.0f}"),
        ("points/s stored", lambda f: f"{f.stored_per_s:,.0f}"),
        ("export latency p50 (ms)", lambda f: f"{f.p50_ms:.1f}"),
        ("export latency p99 (ms)", lambda f: f"{f.p99_ms:.1f}"),
        ("peak RSS (MiB)", lambda f: f"{f.peak_rss_mib:.0f}"),
        ("CPU s per M points", lambda f: _fmt(f.cpu_s_per_m, ".2f")),
        ("PostgreSQL CPU s per M points", lambda f: _fmt(f.postgres_cpu_s_per_m, ".2f")),
        ("bytes stored per point", lambda f: _fmt(f.bytes_per_point, ".1f")),
        ("drain after SIGTERM (s)", lambda f: f"{f.drain_s:.1f}"),
        ("stored == acknowledged", _stored_cell),
        ("exit code", lambda f: str(f.exit_code)),
        ("retries (UNAVAILABLE/EXHAUSTED)", lambda f: str(f.retries)),
        ("generator CPU share", lambda f: "/".join(f"{s:.0%}" for s in f.generator_cpu_share)),
    ]
    print()
    print(f"{'':32}" + "".join(f"{f.name:>16}" for f in figures))
    for label, cell in rows:
        print(f"{label:32}" + "".join(f"{cell(f):>16}" for f in figures))
    if any(not f.stores for f in figures):
        print("ceiling: raw receive, stores nothing; its stored points/s = acknowledged")
    by_name = {f.name: f for f in figures}
    for other in ("baseline", "ceiling"):
        if {"tidegate", other} <= by_name.keys() and by_name[other].stored_per_s:
            ratio = by_name["tidegate"].stored_per_s / by_name[other].stored_per_s
            print(f"{'stored points/s tidegate/' + other:32}{ratio:>16.2f}")


def _tidegate_command(args: argparse.Namespace) -> str:
    sibling = Path(sys.executable).with_name("tidegate")
    found = args.tidegate or (str(sibling) if sibling.exists() else shutil.which("tidegate"))
    if not found:
        raise SystemExit("no `tidegate` executable: install the project or pass --tidegate")
    return found


def _specs(args: argparse.Namespace, workdir: Path, dsn: str) -> list[TargetSpec]:
    """The selected targets, each on free ports."""
    specs: list[TargetSpec] = []
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
        specs.append(
            TargetSpec(
                "tidegate",
                command,
                lambda p: wait_http_ok(ready_url, p, READY_TIMEOUT_S),
                f"127.0.0.1:{grpc_port}",
                TIDEGATE_COUNT,
                TIDEGATE_TABLES,
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
        specs.append(
            TargetSpec(
                "baseline",
                command,
                lambda p: wait_tcp_open(port, p, READY_TIMEOUT_S),
                f"127.0.0.1:{port}",
                BASELINE_COUNT,
                BASELINE_TABLES,
            )
        )
    if args.only in (None, "ceiling"):
        raw_port = free_port()
        command = [
            sys.executable,
            str(BENCH_DIR / "baselines" / "raw_receive.py"),
            "--listen",
            f"127.0.0.1:{raw_port}",
        ]
        specs.append(
            TargetSpec(
                "ceiling",
                command,
                lambda p: wait_tcp_open(raw_port, p, READY_TIMEOUT_S),
                f"127.0.0.1:{raw_port}",
                None,
            )
        )
    return specs


def run(args: argparse.Namespace, workdir: Path, dsn: str, postgres_pid: int | None) -> None:
    """Run the selected targets one after the other against ``dsn``."""
    figures = [
        run_target(spec, dsn, postgres_pid, args, workdir / f"{spec.name}.log")
        for spec in _specs(args, workdir, dsn)
    ]
    print_table(figures)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")


# Scenario: mixed 10k-series, tidegate, the JSONB baseline, then the raw-receive ceiling.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="existing PostgreSQL (default: a throwaway embedded one)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per target")
    parser.add_argument("--streams", type=int, default=8, help="streams per generator process")
    parser.add_argument("--processes", type=int, default=2, help="generator processes")
    parser.add_argument("--pool", type=int, default=1000, help="distinct requests to replay")
    parser.add_argument("--points-per-request", type=int, default=1000)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument(
        "--only", choices=("tidegate", "baseline", "ceiling"), help="run one target only"
    )
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
