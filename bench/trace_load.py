"""The senders of the trace benchmark: raw unary gRPC ``TraceService/Export`` calls.

``send`` runs a ``SendPlan`` from spawned processes, either as concurrent streams (one call in
flight each, as many as they can) or paced at a fixed rate of requests per second. Requests are
stamped from ``bench.trace_payloads`` templates; UNAVAILABLE and RESOURCE_EXHAUSTED answers are
retried after 50 ms and counted. ``SendResult`` holds what was acknowledged, by request number,
so the benchmark can name the traces it sent afterwards.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bench.loadgen import RETRY_SLEEP_S, RETRYABLE
from bench.trace_measures import blocks_ok, quantile
from bench.trace_payloads import Template, request_seed

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
CALL_TIMEOUT_S = 60.0
MESSAGE_LIMIT = 64 * 1024 * 1024


@dataclass
class SendPlan:
    """Request numbers ``first``, ``first + 1``, ... (at most ``count``) for ``duration_s``;
    unpaced over ``processes`` x ``streams`` streams, or at ``rate`` requests/s."""

    salt: int
    first: int
    count: int | None
    duration_s: float
    processes: int = 1
    streams: int = 1
    rate: float | None = None
    metrics_url: str | None = None  # paced: read the blocks counter around the window


@dataclass
class SendResult:
    started: float = math.inf  # time.monotonic(), shared by the processes (CLOCK_MONOTONIC)
    ended: float = 0.0
    requests_ok: int = 0
    spans_acked: int = 0
    spans_rejected: int = 0
    retries: int = 0  # attempts answered UNAVAILABLE / RESOURCE_EXHAUSTED
    retried_requests: int = 0  # requests with at least one such answer
    abandoned: int = 0  # still being retried when the run ended: never acknowledged
    failures: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)  # request numbers acknowledged
    cpu_share: list[float] = field(default_factory=list)
    window_blocks: float = 0.0  # paced: blocks stored during the sending window
    window_s: float = 0.0

    def merge(self, other: SendResult) -> None:
        self.started = min(self.started, other.started)
        self.ended = max(self.ended, other.ended)
        self.requests_ok += other.requests_ok
        self.spans_acked += other.spans_acked
        self.spans_rejected += other.spans_rejected
        self.retries += other.retries
        self.retried_requests += other.retried_requests
        self.abandoned += other.abandoned
        for code, n in other.failures.items():
            self.failures[code] = self.failures.get(code, 0) + n
        self.latencies_ms.extend(other.latencies_ms)
        self.acked.extend(other.acked)
        self.cpu_share.extend(other.cpu_share)
        self.window_blocks += other.window_blocks
        self.window_s = max(self.window_s, other.window_s)

    @property
    def send_s(self) -> float:
        return max(self.ended - self.started, 1e-9)

    def latency_ms(self, q: float) -> float:
        return quantile(self.latencies_ms, q)


async def _send(
    export: Any, templates: list[Template], salt: int, k: int, deadline: float, result: SendResult
) -> None:
    template = templates[k % len(templates)]
    body = template.stamp(request_seed(salt, k))
    retried = False
    while True:
        started = time.perf_counter()
        try:
            answer = await export(body, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() in RETRYABLE:
                if time.monotonic() >= deadline:
                    result.abandoned += 1
                    return
                result.retries += 1
                result.retried_requests += not retried
                retried = True
                await asyncio.sleep(RETRY_SLEEP_S)
                continue
            name = error.code().name
            result.failures[name] = result.failures.get(name, 0) + 1
            return
        result.latencies_ms.append((time.perf_counter() - started) * 1000.0)
        rejected = ExportTraceServiceResponse.FromString(answer).partial_success.rejected_spans
        result.requests_ok += 1
        result.spans_rejected += rejected
        result.spans_acked += template.spans - rejected
        result.acked.append(k)
        return


async def _run_sender(
    target: str, templates: list[Template], plan: SendPlan, process_index: int
) -> SendResult:
    result = SendResult()
    options = [
        ("grpc.max_send_message_length", MESSAGE_LIMIT),
        ("grpc.max_receive_message_length", MESSAGE_LIMIT),
    ]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        export = channel.unary_unary(
            EXPORT_METHOD, request_serializer=None, response_deserializer=None
        )
        end = math.inf if plan.count is None else plan.first + plan.count
        total = plan.processes * plan.streams
        blocks_before = 0.0
        if plan.metrics_url:
            blocks_before = await asyncio.to_thread(blocks_ok, plan.metrics_url)
        cpu_started = time.process_time()
        result.started = time.monotonic()
        deadline = result.started + plan.duration_s

        async def stream(g: int) -> None:
            k = plan.first + g
            while k < end and time.monotonic() < deadline:
                await _send(export, templates, plan.salt, k, deadline, result)
                k += total

        async def paced(rate: float) -> None:
            tasks = []
            n = int(plan.duration_s * rate)
            if plan.count is not None:
                n = min(n, plan.count)
            for i in range(n):
                delay = result.started + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(
                    asyncio.create_task(
                        _send(export, templates, plan.salt, plan.first + i, math.inf, result)
                    )
                )
            await asyncio.gather(*tasks)

        if plan.rate is None:
            first_stream = process_index * plan.streams
            await asyncio.gather(*(stream(first_stream + s) for s in range(plan.streams)))
        else:
            await paced(plan.rate)
        result.ended = time.monotonic()
        if plan.metrics_url:
            result.window_blocks = await asyncio.to_thread(blocks_ok, plan.metrics_url)
            result.window_blocks -= blocks_before
            result.window_s = time.monotonic() - result.started
        result.cpu_share = [(time.process_time() - cpu_started) / result.send_s]
    return result


def _sender_main(
    target: str,
    templates: list[Template],
    plan: SendPlan,
    process_index: int,
    barrier: Barrier,
    results: multiprocessing.Queue[SendResult],
) -> None:
    # Ctrl-C reaches the whole process group; the parent terminates us, so stay quiet.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    barrier.wait(timeout=120)
    results.put(asyncio.run(_run_sender(target, templates, plan, process_index)))


def send(target: str, templates: list[Template], plan: SendPlan) -> SendResult:
    """Run ``plan`` from spawned sender processes; block until they report."""
    context = multiprocessing.get_context("spawn")
    processes = 1 if plan.rate is not None else plan.processes
    barrier = context.Barrier(processes)
    results: multiprocessing.Queue[SendResult] = context.Queue()
    workers = [
        context.Process(
            target=_sender_main,
            args=(target, templates, plan, p, barrier, results),
            daemon=True,
        )
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    total = SendResult()
    timeout = 180 + (plan.duration_s if math.isfinite(plan.duration_s) else 3600)
    try:
        for _ in workers:
            total.merge(results.get(timeout=timeout))
        for worker in workers:
            worker.join(timeout=30)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)
    return total
