"""Recovery figures of the durable spool: restart with a full spool, and a PostgreSQL outage.

1. restart: a spool of ``--spool-mib`` MiB of metrics requests is built the way the daemon
   writes it (``Spool`` directly, seqs 1..N, the mixed 10k-series requests of
   ``otlp_payloads`` made distinct as the load generator makes them), fsynced and dropped from
   the page cache; against a fresh (migrated) database, with no checkpoint, every record is
   replayed. Measured from ``tidegate serve``'s start: /readyz 200 (it replays before it
   serves), every point stored (/metrics, then checked in PostgreSQL), the spool down to its
   last segment; peak RSS, replay rate, exit code after SIGTERM.
2. outage: the benchmark load (2 processes x 8 streams) for ``--outage-load-seconds``;
   ``--outage-after`` seconds in, PostgreSQL is stopped for ``--outage-seconds``, then started
   again. /metrics is sampled every 0.5 s: acknowledged rate before, during and after,
   generator errors, peak spool bytes, and the drain after the restart; at the end every
   acknowledged point must be in PostgreSQL.

    .venv/bin/python bench/bench_recovery.py --json bench/results/recovery.json
    .venv/bin/python bench/bench_recovery.py --spool-mib 64 --outage-seconds 5 \
        --outage-load-seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as `python bench/bench_recovery.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import LoadResult, run_load
from bench.otlp_payloads import build_requests
from bench.procwatch import RssSampler
from bench.recovery_steps import (
    DaemonProcess,
    Postgres,
    Sample,
    build_spool,
    first_line_at,
    first_time,
    http_status,
    migrate,
    rate,
    replay_seconds,
    scrape,
    segment_count,
    start_daemon,
    stored_points,
    value_at,
    wait_until,
    warnings_summary,
)

SAMPLE_EVERY_S = 0.5
STOP_TIMEOUT_S = 300.0  # SIGTERM to exit: the daemon drains what it holds first
STREAMS, PROCESSES = 8, 2  # the benchmark load of bench/README.md


@dataclass
class RestartFigures:
    """Restart with a full spool; every ``*_s`` is seconds from the daemon's start."""

    spool_bytes: int
    spool_segments: int
    records: int
    points: int
    build_s: float
    http_up_s: float | None  # /readyz answers at all (503 while replaying)
    recovered_s: float | None  # log: the metrics spool's recovery scan is done
    replay_log_s: float | None  # log: the replay's own duration
    ready_s: float
    all_stored_s: float | None  # tidegate_points_stored_total reached every point
    sql_points: int
    released_s: float | None  # the metrics spool is down to one segment
    replay_records_per_s: float | None
    replay_points_per_s: float | None
    stored_points_per_s: float | None  # from the end of recovery until all stored
    peak_rss_mib: float
    exit_code: int
    stop_s: float
    log_warnings: list[str]


@dataclass
class OutageFigures:
    """The outage under load; times in seconds from the load's start unless said otherwise."""

    outage_after_s: float
    pg_stop_issued_s: float
    pg_stopped_s: float
    pg_start_issued_s: float
    pg_started_s: float
    acked_per_s_before: float
    acked_per_s_during: float
    acked_per_s_after: float
    stored_per_s_after_restart: float  # until caught up
    generator_acked: int
    generator_retries: int
    generator_failures: dict[str, int]
    generator_p50_ms: float
    generator_p99_ms: float
    generator_max_ms: float
    generator_cpu_share: list[float]
    daemon_accepted: int
    peak_spool_bytes: float
    pre_outage_spool_bytes: float
    pre_outage_backlog_points: float
    peak_backlog_points: float
    circuit_open_after_stop_s: float | None
    circuit_closed_after_start_s: float | None
    # Seconds from PostgreSQL being up again until: everything acknowledged before then is
    # stored; the backlog (accepted - stored) is back to its pre-outage peak; the spool too.
    caught_up_s: float | None
    backlog_normal_s: float | None
    spool_normal_s: float | None
    drained_after_load_s: float | None  # from the load's end until stored == accepted
    sql_points: int
    exit_code: int
    log_warnings: list[str]
    samples: list[Sample] = field(default_factory=list)


def _alive(daemon: DaemonProcess) -> None:
    if daemon.process.poll() is not None:
        raise RuntimeError(f"the daemon exited with {daemon.process.returncode}; see its log")


def _since(daemon: DaemonProcess, at: float | None) -> float | None:
    return None if at is None else at - daemon.started_monotonic


# Scenario: restart with --spool-mib MiB of uncommitted mixed 10k-series requests to replay.
def measure_restart(args: argparse.Namespace, workdir: Path) -> RestartFigures:
    postgres = Postgres(workdir / "pg-restart")
    postgres.start()
    try:
        migrate(postgres.dsn)
        data_dir = workdir / "restart-data"
        spool_dir = data_dir / "spool" / "metrics"
        build = build_spool(spool_dir, build_requests(args.pool), args.spool_mib * 2**20)
        print(
            f"[restart] spool built: {build.records:,} records, {build.points:,} points, "
            f"{build.bytes / 2**20:,.0f} MiB in {build.segments} segments, {build.seconds:.1f} s",
            flush=True,
        )
        daemon = start_daemon(postgres.dsn, data_dir, workdir / "restart-daemon.log")
        ready_url = f"{daemon.http_url}/readyz"
        try:
            with RssSampler(daemon.process.pid, interval=0.1) as rss:

                def answers() -> bool:
                    _alive(daemon)
                    return http_status(ready_url) is not None

                def ready() -> bool:
                    _alive(daemon)
                    return http_status(ready_url) == 200

                def all_stored() -> bool:
                    _alive(daemon)
                    figures = scrape(daemon.http_url)
                    return figures is not None and figures.stored >= build.points

                http_up = wait_until(answers, args.timeout, 0.05)
                ready_at = wait_until(ready, args.timeout, 0.05)
                if ready_at is None:
                    raise TimeoutError(f"not ready within {args.timeout:.0f} s")
                print(f"[restart] ready after {ready_at - daemon.started_monotonic:.1f} s")
                stored_at = wait_until(all_stored, args.timeout, 0.25)
                sql_points = stored_points(postgres.dsn)
                print(f"[restart] stored {sql_points:,} of {build.points:,} points", flush=True)
                released_at = wait_until(
                    lambda: segment_count(spool_dir) <= 1, args.release_timeout, 0.5
                )
            stopping = time.monotonic()
            exit_code = daemon.stop(STOP_TIMEOUT_S)
            stop_s = time.monotonic() - stopping
        finally:
            daemon.stop(10)
    finally:
        postgres.stop()
    log = daemon.log_path
    recovered = first_line_at(log, r"^metrics spool: .* recovered", daemon.started_wall)
    replay_s = replay_seconds(log)
    stored_s = _since(daemon, stored_at)
    return RestartFigures(
        spool_bytes=build.bytes,
        spool_segments=build.segments,
        records=build.records,
        points=build.points,
        build_s=build.seconds,
        http_up_s=_since(daemon, http_up),
        recovered_s=recovered,
        replay_log_s=replay_s,
        ready_s=ready_at - daemon.started_monotonic,
        all_stored_s=stored_s,
        sql_points=sql_points,
        released_s=_since(daemon, released_at),
        replay_records_per_s=build.records / replay_s if replay_s else None,
        replay_points_per_s=build.points / replay_s if replay_s else None,
        stored_points_per_s=(
            build.points / (stored_s - recovered) if stored_s and recovered is not None else None
        ),
        peak_rss_mib=rss.peak_bytes / 2**20,
        exit_code=exit_code,
        stop_s=stop_s,
        log_warnings=warnings_summary(log),
    )


def _timed(action: Any, events: dict[str, float], name: str) -> None:
    action()
    events[name] = time.monotonic()


def _outage_cue(
    args: argparse.Namespace,
    now: float,
    origin: float,
    postgres: Postgres,
    executor: ThreadPoolExecutor,
    events: dict[str, float],
) -> Future[None] | None:
    """Stop PostgreSQL --outage-after s into the load and start it --outage-seconds after the
    stop was issued (once it is done), off this thread so that sampling goes on."""
    if "stop_issued" not in events and now >= origin + args.outage_after:
        events["stop_issued"] = now
        print(f"[outage] stopping PostgreSQL at {now - origin:.1f} s", flush=True)
        return executor.submit(_timed, postgres.stop, events, "stopped")
    if (
        "stopped" in events
        and "start_issued" not in events
        and now >= events["stop_issued"] + args.outage_seconds
    ):
        events["start_issued"] = now
        print(f"[outage] starting PostgreSQL at {now - origin:.1f} s", flush=True)
        return executor.submit(_timed, postgres.start, events, "started")
    return None


def _sample_outage(
    args: argparse.Namespace,
    daemon: DaemonProcess,
    postgres: Postgres,
    executor: ThreadPoolExecutor,
    load: Future[LoadResult],
    events: dict[str, float],
    samples: list[Sample],
) -> float:
    """Sample /metrics every 0.5 s, stop and start PostgreSQL on cue, until the load is over
    and the daemon has stored everything it accepted; return when the load started (the
    first sample with an accepted point)."""
    origin: float | None = None
    postgres_step: Future[None] | None = None
    drain_deadline: float | None = None
    next_sample = time.monotonic()
    while True:
        _alive(daemon)
        for future in (load, postgres_step):
            if future is not None and future.done() and future.exception() is not None:
                future.result()  # raises it
        now = time.monotonic()
        figures = scrape(daemon.http_url)
        if figures is not None and origin is None and figures.accepted > 0:
            origin = now
        if figures is not None and origin is not None:
            samples.append(
                Sample(
                    now - origin,
                    figures.accepted,
                    figures.stored,
                    figures.spool_bytes,
                    figures.buffered,
                    figures.circuit,
                )
            )
        if origin is not None:
            postgres_step = _outage_cue(args, now, origin, postgres, executor, events) or (
                postgres_step
            )
        if load.done() and "started" in events and origin is not None:
            drain_deadline = drain_deadline or now + args.timeout
            if figures is not None and figures.stored >= figures.accepted and not figures.buffered:
                return origin
            if now > drain_deadline:
                raise TimeoutError(f"not drained {args.timeout:.0f} s after the load")
        elif load.done() and origin is None:
            raise RuntimeError("the load ended before the daemon accepted anything")
        next_sample += SAMPLE_EVERY_S
        time.sleep(max(0.0, next_sample - time.monotonic()))


# Scenario: mixed 10k-series load, PostgreSQL stopped for --outage-seconds in the middle.
def measure_outage(args: argparse.Namespace, workdir: Path) -> OutageFigures:
    postgres = Postgres(workdir / "pg-outage")
    postgres.start()
    events: dict[str, float] = {}
    samples: list[Sample] = []
    try:
        daemon = start_daemon(postgres.dsn, workdir / "outage-data", workdir / "outage-daemon.log")
        ready_url = f"{daemon.http_url}/readyz"
        try:

            def ready() -> bool:
                _alive(daemon)
                return http_status(ready_url) == 200

            if wait_until(ready, args.timeout) is None:
                raise TimeoutError(f"not ready within {args.timeout:.0f} s")
            # Built just before the load, as e2e does: the points are seconds old when sent.
            pool = build_requests(args.pool)
            with ThreadPoolExecutor(max_workers=2) as executor:
                load = executor.submit(
                    run_load,
                    daemon.grpc_target,
                    pool,
                    args.outage_load_seconds,
                    STREAMS,
                    PROCESSES,
                )
                origin = _sample_outage(args, daemon, postgres, executor, load, events, samples)
                result = load.result()
            sql_points = stored_points(postgres.dsn)
            exit_code = daemon.stop(STOP_TIMEOUT_S)
        finally:
            daemon.stop(10)
    finally:
        postgres.stop()
    at = {name: moment - origin for name, moment in events.items()}
    return _outage_figures(args, at, samples, result, sql_points, exit_code, daemon)


def _outage_figures(
    args: argparse.Namespace,
    at: dict[str, float],
    samples: list[Sample],
    result: LoadResult,
    sql_points: int,
    exit_code: int,
    daemon: DaemonProcess,
) -> OutageFigures:
    def backlog(sample: Sample) -> float:
        return sample.accepted - sample.stored

    started, stopped = at["started"], at["stopped"]
    # The first seconds are the load's ramp-up, not its steady state.
    before = [s for s in samples if 2.0 <= s.t <= at["stop_issued"]] or samples[:1]
    pre_backlog = max(backlog(s) for s in before)
    pre_spool = max(s.spool_bytes for s in before)
    accepted_at_restart = value_at(samples, started, "accepted")
    caught_up = first_time(samples, started, lambda s: s.stored >= accepted_at_restart)
    load_end = result.duration_s
    return OutageFigures(
        outage_after_s=args.outage_after,
        pg_stop_issued_s=at["stop_issued"],
        pg_stopped_s=stopped,
        pg_start_issued_s=at["start_issued"],
        pg_started_s=started,
        acked_per_s_before=rate(samples, 2.0, at["stop_issued"]),
        acked_per_s_during=rate(samples, stopped, started),
        acked_per_s_after=rate(samples, started, load_end),
        stored_per_s_after_restart=(
            rate(samples, started, started + caught_up, "stored") if caught_up else 0.0
        ),
        generator_acked=result.points_acked,
        generator_retries=result.retries,
        generator_failures=result.failures,
        generator_p50_ms=result.latency_ms(0.5),
        generator_p99_ms=result.latency_ms(0.99),
        generator_max_ms=max(result.latencies_ms, default=0.0),
        generator_cpu_share=result.cpu_share,
        daemon_accepted=int(samples[-1].accepted),
        peak_spool_bytes=max(s.spool_bytes for s in samples),
        pre_outage_spool_bytes=pre_spool,
        pre_outage_backlog_points=pre_backlog,
        peak_backlog_points=max(backlog(s) for s in samples),
        circuit_open_after_stop_s=first_time(samples, at["stop_issued"], lambda s: s.circuit != 0),
        circuit_closed_after_start_s=first_time(samples, started, lambda s: s.circuit == 0),
        caught_up_s=caught_up,
        backlog_normal_s=first_time(samples, started, lambda s: backlog(s) <= pre_backlog),
        spool_normal_s=first_time(samples, started, lambda s: s.spool_bytes <= pre_spool),
        drained_after_load_s=first_time(samples, load_end, lambda s: s.stored >= s.accepted),
        sql_points=sql_points,
        exit_code=exit_code,
        log_warnings=warnings_summary(daemon.log_path),
        samples=samples,
    )


def _s(value: float | None, unit: str = " s") -> str:
    return "not reached" if value is None else f"{value:,.1f}{unit}"


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def print_table(title: str, rows: list[tuple[str, str]], warnings: list[str]) -> None:
    print(f"\n{title}")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print("  daemon WARNING/ERROR lines: " + ("none" if not warnings else ""))
    for line in warnings:
        print(f"    {line}")


def print_restart(f: RestartFigures) -> None:
    rate_cells = "n/a"
    if f.replay_records_per_s and f.replay_points_per_s:
        rate_cells = f"{f.replay_records_per_s:,.0f} records/s, {f.replay_points_per_s:,.0f} pts/s"
    rows = [
        ("spool to replay", f"{_mib(f.spool_bytes)}, {f.spool_segments} segments"),
        ("records / points", f"{f.records:,} / {f.points:,}"),
        ("/readyz answers (503)", _s(f.http_up_s)),
        ("spool recovered (log)", _s(f.recovered_s)),
        ("replay, daemon's own timing", _s(f.replay_log_s)),
        ("replay rate (ingest)", rate_cells),
        ("restart-to-ready (/readyz 200)", _s(f.ready_s)),
        ("every point stored", _s(f.all_stored_s)),
        (
            "stored rate after recovery",
            "n/a" if f.stored_points_per_s is None else f"{f.stored_points_per_s:,.0f} pts/s",
        ),
        (
            "points in PostgreSQL",
            f"{f.sql_points:,} ({'==' if f.sql_points == f.points else '!='})",
        ),
        ("spool down to last segment", _s(f.released_s)),
        ("daemon peak RSS", f"{f.peak_rss_mib:,.0f} MiB"),
        ("exit code after SIGTERM", f"{f.exit_code} (stop took {f.stop_s:.1f} s)"),
    ]
    print_table("restart with a full spool (seconds from process start)", rows, f.log_warnings)


def print_outage(f: OutageFigures) -> None:
    failures = sum(f.generator_failures.values())
    rows = [
        ("PostgreSQL down", f"{f.pg_stopped_s:.1f} s .. {f.pg_started_s:.1f} s after load start"),
        (
            "acked pts/s before / during / after",
            f"{f.acked_per_s_before:,.0f} / "
            f"{f.acked_per_s_during:,.0f} / {f.acked_per_s_after:,.0f}",
        ),
        (
            "generator non-OK / retries",
            f"{failures} {f.generator_failures or ''} / {f.generator_retries}",
        ),
        (
            "latency p50 / p99 / max",
            f"{f.generator_p50_ms:.0f} / {f.generator_p99_ms:.0f} / {f.generator_max_ms:.0f} ms",
        ),
        (
            "spool bytes pre-outage / peak",
            f"{_mib(f.pre_outage_spool_bytes)} / {_mib(f.peak_spool_bytes)}",
        ),
        (
            "backlog pre-outage / peak",
            f"{f.pre_outage_backlog_points:,.0f} / {f.peak_backlog_points:,.0f} points",
        ),
        ("circuit open after stop", _s(f.circuit_open_after_stop_s)),
        ("circuit closed after start", _s(f.circuit_closed_after_start_s)),
        ("drain: acked-at-restart stored", _s(f.caught_up_s)),
        ("stored pts/s while catching up", f"{f.stored_per_s_after_restart:,.0f}"),
        ("drain: backlog at pre-outage peak", _s(f.backlog_normal_s)),
        ("drain: spool at pre-outage peak", _s(f.spool_normal_s)),
        ("drained after the load ended", _s(f.drained_after_load_s)),
        ("acked (generator / daemon)", f"{f.generator_acked:,} / {f.daemon_accepted:,}"),
        (
            "points in PostgreSQL",
            f"{f.sql_points:,} ({'==' if f.sql_points == f.generator_acked else '!='} acked)",
        ),
        ("exit code after SIGTERM", str(f.exit_code)),
    ]
    title = (
        f"PostgreSQL outage of {f.pg_start_issued_s - f.pg_stop_issued_s:.0f} s under load "
        f"(drain times from PostgreSQL back)"
    )
    print_table(title, rows, f.log_warnings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("restart", "outage"), help="run one measurement")
    parser.add_argument("--spool-mib", type=int, default=1024, help="spool to replay (MiB)")
    parser.add_argument("--outage-seconds", type=float, default=30.0)
    parser.add_argument("--outage-load-seconds", type=float, default=90.0)
    parser.add_argument("--outage-after", type=float, default=20.0, help="s of load before it")
    parser.add_argument("--pool", type=int, default=1000, help="distinct requests to cycle")
    parser.add_argument("--timeout", type=float, default=1800.0, help="s for each wait")
    parser.add_argument("--release-timeout", type=float, default=600.0, help="s for release")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args()
    if args.outage_after + args.outage_seconds >= args.outage_load_seconds:
        parser.error("the outage must end before the load: raise --outage-load-seconds")

    # Embedded PostgreSQL runs as another user when we are root: its parent must be traversable.
    workdir = Path(tempfile.mkdtemp(prefix="tidegate-recovery-", dir="/tmp"))
    os.chmod(workdir, 0o755)
    figures: dict[str, Any] = {}
    try:
        if args.only in (None, "restart"):
            restart = measure_restart(args, workdir)
            print_restart(restart)
            figures["restart"] = asdict(restart)
        if args.only in (None, "outage"):
            outage = measure_outage(args, workdir)
            print_outage(outage)
            figures["outage"] = asdict(outage)
    finally:
        if args.json and figures:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
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
