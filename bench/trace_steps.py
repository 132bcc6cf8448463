"""The steps of the trace benchmark against one store, each filling its ``StoreFigures``.

``start_daemon`` creates the store's database and starts ``tidegate serve`` on free loopback
ports; then, in the order the benchmark runs them: ``measure_throughput`` (unpaced streams until
every acknowledged span is indexed), ``top_up`` (to ``--spans-for-lookup`` spans),
``measure_bytes`` (block objects and ``trace_index`` over the stored spans), ``measure_lookups``
(trace by id over known traces), ``measure_puts`` (paced runs of 8-span and 2-span traces) and
``drain`` (SIGTERM, exit code, every acknowledged span indexed).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procwatch import RssSampler, free_port, stop_process, tree_cpu_seconds, wait_http_ok
from bench.trace_figures import PutFigures, StoreFigures
from bench.trace_load import SendPlan, SendResult, send
from bench.trace_measures import (
    create_database,
    database_dsn,
    index_size,
    indexed,
    lookups,
    searches,
    wait_indexed,
)
from bench.trace_payloads import PHASE_REQUESTS, Template, request_seed
from bench.trace_stores import StoreSetup, aws_environment

READY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 120.0
WARMUP_LOOKUPS = 5


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tidegate_command(explicit: str | None) -> str:
    sibling = Path(sys.executable).with_name("tidegate")
    found = explicit or (str(sibling) if sibling.exists() else shutil.which("tidegate"))
    if not found:
        raise SystemExit("no `tidegate` executable: install the project or pass --tidegate")
    return found


def _check_send(result: SendResult, figures: StoreFigures, what: str) -> None:
    if result.failures:
        figures.errors.append(f"{what}: failed calls {result.failures}")
    if result.spans_rejected:
        figures.errors.append(f"{what}: {result.spans_rejected} spans rejected")


@dataclass
class StoreRun:
    """One store's daemon, and what the steps have sent to it so far."""

    setup: StoreSetup
    args: argparse.Namespace
    dsn: str
    postgres_pid: int
    target: str  # gRPC host:port
    http_port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    salt: int  # of every request id of the run
    figures: StoreFigures
    acked_total: int = 0
    lookup_ks: list[int] = field(default_factory=list)  # acknowledged request numbers

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/metrics"

    def print_log_tail(self) -> None:
        print(self.log_path.read_text(errors="replace")[-4000:], file=sys.stderr)


def start_daemon(
    setup: StoreSetup, args: argparse.Namespace, workdir: Path, server: Any
) -> StoreRun:
    """A fresh database on ``server`` and ``tidegate serve`` on it, for the store of ``setup``."""
    figures = StoreFigures(store=setup.kind, url=setup.url)
    name = f"bench_traces_{setup.kind}"
    asyncio.run(create_database(server.get_uri(), name))
    dsn = database_dsn(server.get_uri(), name)
    postgres_pid = server.get_pid()
    grpc_port, http_port = free_port(), free_port()
    target = f"127.0.0.1:{grpc_port}"
    command = [
        _tidegate_command(args.tidegate),
        "serve",
        "--dsn",
        dsn,
        "--data-dir",
        str(workdir / f"tidegate-{setup.kind}"),
        "--grpc-listen",
        target,
        "--http-listen",
        f"127.0.0.1:{http_port}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    env.update(aws_environment())
    env.update(setup.env)
    log_path = workdir / f"tidegate-{setup.kind}.log"
    salt = random.getrandbits(23)
    log(f"[{setup.kind}] starting the daemon (store {setup.url}, log {log_path})")
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return StoreRun(
        setup, args, dsn, postgres_pid, target, http_port, log_path, process, salt, figures
    )


def wait_ready(run: StoreRun) -> None:
    try:
        wait_http_ok(f"http://127.0.0.1:{run.http_port}/readyz", run.process, READY_TIMEOUT_S)
    except (RuntimeError, TimeoutError):
        run.print_log_tail()
        raise


def measure_throughput(run: StoreRun, templates: list[Template]) -> None:
    """1. Unpaced streams for ``--duration`` s, then the wait until all is indexed."""
    setup, args, figures, process = run.setup, run.args, run.figures, run.process
    moto_pid = setup.moto.process.pid if setup.moto and setup.moto.process else None
    cpu0, pg0 = tree_cpu_seconds(process.pid), tree_cpu_seconds(run.postgres_pid)
    moto0 = tree_cpu_seconds(moto_pid) if moto_pid else 0.0
    plan = SendPlan(run.salt, 0, None, args.duration, args.processes, args.streams)
    with RssSampler(process.pid) as sampler:
        result = send(run.target, templates, plan)
        _check_send(result, figures, "throughput")
        run.acked_total += result.spans_acked
        indexed_at = wait_indexed(run.dsn, run.metrics_url, run.acked_total)
    cpu = tree_cpu_seconds(process.pid) - cpu0
    pg = tree_cpu_seconds(run.postgres_pid) - pg0
    moto = tree_cpu_seconds(moto_pid) - moto0 if moto_pid else None
    per_m = 1e6 / max(result.spans_acked, 1)
    figures.requests = result.requests_ok
    figures.spans_acked = result.spans_acked
    figures.send_s = result.send_s
    figures.indexed_s = indexed_at - result.started
    figures.acked_per_s = result.spans_acked / result.send_s
    figures.stored_per_s = result.spans_acked / figures.indexed_s
    figures.p50_ms = result.latency_ms(0.5)
    figures.p99_ms = result.latency_ms(0.99)
    figures.retried_requests = result.retried_requests
    figures.retries = result.retries
    figures.abandoned = result.abandoned
    figures.daemon_cpu_s_per_m = cpu * per_m
    figures.postgres_cpu_s_per_m = pg * per_m
    figures.moto_cpu_s_per_m = moto * per_m if moto is not None else None
    figures.peak_rss_mib = sampler.peak_bytes / 2**20
    figures.generator_cpu_share = result.cpu_share
    run.lookup_ks = list(result.acked)
    log(
        f"[{setup.kind}] throughput: {result.spans_acked:,} spans acknowledged in"
        f" {result.send_s:.1f} s, all indexed after {figures.indexed_s:.1f} s;"
        f" {result.retried_requests} requests retried"
    )


def top_up(run: StoreRun, templates: list[Template]) -> None:
    """Send more requests until ``--spans-for-lookup`` spans are stored, if short."""
    args, figures = run.args, run.figures
    missing = args.spans_for_lookup - run.acked_total
    if missing <= 0:
        return
    count = -(-missing // 1000)
    log(f"[{run.setup.kind}] topping up with {count:,} requests for the lookups")
    topup = send(
        run.target,
        templates,
        SendPlan(run.salt, PHASE_REQUESTS, count, math.inf, args.processes, args.streams),
    )
    _check_send(topup, figures, "top-up")
    run.acked_total += topup.spans_acked
    wait_indexed(run.dsn, run.metrics_url, run.acked_total)
    run.lookup_ks += topup.acked
    figures.topup_spans = topup.spans_acked
    figures.topup_retried_requests = topup.retried_requests


def measure_bytes(run: StoreRun) -> None:
    """2. Bytes per span, over the stored data set."""
    figures = run.figures
    spans, rows = asyncio.run(indexed(run.dsn))
    figures.spans_stored, figures.index_rows = spans, rows
    figures.blocks, figures.block_bytes = run.setup.objects()
    figures.index_bytes = asyncio.run(index_size(run.dsn))
    figures.block_bytes_per_span = figures.block_bytes / max(spans, 1)
    figures.index_bytes_per_span = figures.index_bytes / max(spans, 1)
    figures.bytes_per_span = figures.block_bytes_per_span + figures.index_bytes_per_span


def measure_lookups(run: StoreRun, templates: list[Template]) -> None:
    """4. Trace by id for ``--lookups`` random acknowledged traces, after the warm-up."""
    figures, lookup_ks = run.figures, run.lookup_ks
    rng = random.Random(run.salt)
    picks = []
    for k in rng.sample(lookup_ks, min(len(lookup_ks), run.args.lookups + WARMUP_LOOKUPS)):
        template = templates[k % len(templates)]
        picks.append(
            (rng.choice(template.trace_ids(request_seed(run.salt, k))), template.spans_per_trace)
        )
    log(f"[{run.setup.kind}] {len(picks)} lookups over {figures.spans_stored:,} stored spans")
    figures.lookup = asyncio.run(lookups(run.dsn, run.setup.config, picks, WARMUP_LOOKUPS))
    if figures.lookup.wrong:
        figures.errors.append(f"{figures.lookup.wrong} lookups returned wrong span counts")
    figures.searches_ms = asyncio.run(searches(run.dsn))


def measure_puts(run: StoreRun, templates: list[Template], small: list[Template]) -> None:
    """3. PUTs at a steady ``--paced-rate`` spans/s, with 8-span and then 2-span traces."""
    setup, args, figures = run.setup, run.args, run.figures
    for phase, (shape, pool) in enumerate(((8, templates), (2, small)), start=2):
        objects_before = setup.objects()
        paced = send(
            run.target,
            pool,
            SendPlan(
                run.salt,
                phase * PHASE_REQUESTS,
                None,
                args.paced_duration,
                rate=args.paced_rate / 1000,
                metrics_url=run.metrics_url,
            ),
        )
        _check_send(paced, figures, f"paced {shape}-span")
        run.acked_total += paced.spans_acked
        wait_indexed(run.dsn, run.metrics_url, run.acked_total)
        objects_after = setup.objects()
        blocks = objects_after[0] - objects_before[0]
        figures.puts.append(
            PutFigures(
                spans_per_trace=shape,
                spans_per_s=paced.spans_acked / paced.send_s,
                window_s=paced.window_s,
                window_blocks=int(paced.window_blocks),
                puts_per_hour=paced.window_blocks * 3600 / paced.window_s,
                blocks_total=blocks,
                bytes_per_block=(objects_after[1] - objects_before[1]) / max(blocks, 1),
                spans_per_block=paced.spans_acked / max(blocks, 1),
                retried_requests=paced.retried_requests,
            )
        )
        log(
            f"[{setup.kind}] paced {shape}-span traces: {int(paced.window_blocks)} blocks in"
            f" {paced.window_s:.1f} s"
        )


def drain(run: StoreRun) -> None:
    """The end: SIGTERM drains; every acknowledged span must be indexed."""
    figures = run.figures
    started = time.monotonic()
    figures.exit_code = stop_process(run.process, DRAIN_TIMEOUT_S)
    figures.drain_s = time.monotonic() - started
    if figures.exit_code != 0:
        figures.errors.append(f"the daemon exited with {figures.exit_code}")
    final, _ = asyncio.run(indexed(run.dsn))
    if final != run.acked_total:
        figures.errors.append(f"{final:,} spans indexed, {run.acked_total:,} acknowledged")
    if figures.errors:
        run.print_log_tail()
