"""Replay pre-serialized OTLP metrics requests over gRPC and measure what the server acknowledged.

Scenario: the mixed 10k-series workload of ``otlp_payloads`` (1,000 points per request), sent by
``processes`` x ``streams`` concurrent streams, each keeping exactly one request in flight, for a
fixed duration. Raw bytes go out and come back (identity serializers), so the client spends no
time on protobuf except parsing the small responses for ``partial_success``.

    python bench/loadgen.py --target 127.0.0.1:4317 --duration 30 --streams 8 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

if __package__ in (None, ""):
    # Run as `python bench/loadgen.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.otlp_payloads import Payload, build_requests

EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
RETRY_SLEEP_S = 0.05
CALL_TIMEOUT_S = 30.0
# Above this share of one core, a generator process is the bottleneck, not the server.
SATURATED_CPU_SHARE = 0.9
_MESSAGE_LIMIT = 64 * 1024 * 1024


@dataclass
class LoadResult:
    """What the generator sent and what the server acknowledged, summed over processes."""

    duration_s: float = 0.0
    requests_ok: int = 0
    points_sent: int = 0
    points_acked: int = 0
    points_rejected: int = 0
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    # Per generator process: CPU seconds / wall seconds of its load window.
    cpu_share: list[float] = field(default_factory=list)

    def merge(self, other: LoadResult) -> None:
        """Add another process's figures to this one (duration is the longest)."""
        self.duration_s = max(self.duration_s, other.duration_s)
        self.requests_ok += other.requests_ok
        self.points_sent += other.points_sent
        self.points_acked += other.points_acked
        self.points_rejected += other.points_rejected
        self.retries += other.retries
        for code, n in other.failures.items():
            self.failures[code] = self.failures.get(code, 0) + n
        self.latencies_ms.extend(other.latencies_ms)
        self.cpu_share.extend(other.cpu_share)

    @property
    def acked_per_s(self) -> float:
        return self.points_acked / self.duration_s if self.duration_s else 0.0

    def latency_ms(self, quantile: float) -> float:
        """Latency quantile of successful Export calls, in milliseconds (0 when none)."""
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else 0.0
        return statistics.quantiles(self.latencies_ms, n=1000, method="inclusive")[
            round(quantile * 1000) - 1
        ]

    @property
    def generator_saturated(self) -> bool:
        return any(share >= SATURATED_CPU_SHARE for share in self.cpu_share)


# Field 99, varint: not a field of ExportMetricsServiceRequest.
SEND_NUMBER_TAG = bytes([0x98, 0x06])


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


async def _stream(
    export: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes],
    payloads: list[Payload],
    first: int,
    stride: int,
    deadline: float,
    result: LoadResult,
) -> None:
    index = first
    while time.monotonic() < deadline:
        payload = payloads[index % len(payloads)]
        # Every send is a distinct request (a real exporter never sends the same bytes twice
        # but to retry): an unknown field, which decoders skip, carries the send's number.
        request = payload.body + SEND_NUMBER_TAG + _varint(index)
        index += stride
        # Retry the same request until it is answered or the run is over, as an OTLP exporter does.
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                body = await export(request, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                if error.code() in RETRYABLE:
                    result.retries += 1
                    await asyncio.sleep(RETRY_SLEEP_S)
                    continue
                name = error.code().name
                result.failures[name] = result.failures.get(name, 0) + 1
                break
            result.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            rejected = ExportMetricsServiceResponse.FromString(body).partial_success
            result.requests_ok += 1
            result.points_sent += payload.points
            result.points_rejected += rejected.rejected_data_points
            result.points_acked += payload.points - rejected.rejected_data_points
            break


async def run_streams(
    target: str,
    payloads: list[Payload],
    duration_s: float,
    streams: int,
    first_stream: int = 0,
    total_streams: int | None = None,
) -> LoadResult:
    """Run ``streams`` streams in this event loop for ``duration_s`` against ``target``.

    Stream ``s`` sends payloads ``first_stream + s``, then every ``total_streams``-th one, so
    streams of several processes interleave over the pool instead of sending the same bytes.
    """
    result = LoadResult()
    stride = total_streams or streams
    options = [
        ("grpc.max_send_message_length", _MESSAGE_LIMIT),
        ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
    ]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        # None serializers: grpc sends and returns the raw bytes unchanged.
        export = channel.unary_unary(
            EXPORT_METHOD, request_serializer=None, response_deserializer=None
        )
        cpu_started = time.process_time()
        started = time.monotonic()
        deadline = started + duration_s
        await asyncio.gather(
            *(
                _stream(export, payloads, first_stream + s, stride, deadline, result)
                for s in range(streams)
            )
        )
        result.duration_s = time.monotonic() - started
        result.cpu_share = [(time.process_time() - cpu_started) / result.duration_s]
    return result


def _process_main(
    target: str,
    payloads: list[Payload],
    duration_s: float,
    streams: int,
    process_index: int,
    processes: int,
    barrier: Barrier,
    results: multiprocessing.Queue[LoadResult],
) -> None:
    # Ctrl-C reaches the whole process group; the parent terminates us, so stay quiet.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Every process starts its clock together, after its (slow) spawn and unpickling.
    barrier.wait(timeout=120)
    results.put(
        asyncio.run(
            run_streams(
                target, payloads, duration_s, streams, process_index * streams, processes * streams
            )
        )
    )


def run_load(
    target: str,
    payloads: list[Payload],
    duration_s: float = 30.0,
    streams: int = 8,
    processes: int = 2,
) -> LoadResult:
    """Replay ``payloads`` from ``processes`` processes of ``streams`` streams each; block."""
    # spawn, not fork: the parent may hold grpc or asyncpg state that must not be forked.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results: multiprocessing.Queue[LoadResult] = context.Queue()
    workers = [
        context.Process(
            target=_process_main,
            args=(target, payloads, duration_s, streams, p, processes, barrier, results),
            daemon=True,
        )
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    total = LoadResult()
    try:
        for _ in workers:
            total.merge(results.get(timeout=duration_s + 180))
        for worker in workers:
            worker.join(timeout=30)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)
    return total


def format_result(result: LoadResult) -> str:
    """A human summary of one load run."""
    lines = [
        f"duration {result.duration_s:.1f} s, {result.requests_ok} requests ok, "
        f"{result.points_acked:,} points acked ({result.acked_per_s:,.0f}/s), "
        f"{result.points_rejected:,} rejected, {result.retries} retries, "
        f"failures {result.failures or 'none'}",
        f"latency p50 {result.latency_ms(0.5):.1f} ms, p99 {result.latency_ms(0.99):.1f} ms",
        "generator CPU share per process: "
        + ", ".join(f"{share:.0%}" for share in result.cpu_share)
        + (" -- SATURATED: the generator may be the limit" if result.generator_saturated else ""),
    ]
    return "\n".join(lines)


# Scenario: mixed 10k-series replayed against one target; prints acks, latency, CPU share.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:4317")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--streams", type=int, default=8, help="streams per process")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--pool", type=int, default=1000, help="distinct requests to replay")
    parser.add_argument("--points-per-request", type=int, default=1000)
    parser.add_argument("--series", type=int, default=10_000)
    args = parser.parse_args()
    payloads = build_requests(args.pool, args.points_per_request, args.series)
    print(
        format_result(run_load(args.target, payloads, args.duration, args.streams, args.processes))
    )


if __name__ == "__main__":
    main()
