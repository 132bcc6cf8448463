"""Raw-receive ceiling: takes OTLP metrics Export requests as bytes, counts them, stores nothing.

Scenario: the most a gRPC server in Python can acknowledge on this machine under the benchmark
load, the ceiling ``make bench`` sets tidegate against. A generic handler for
``MetricsService/Export`` has no request deserializer, so each request arrives as bytes that are
only counted, and the answer is an empty ``ExportMetricsServiceResponse`` (``b""``), so every
point sent counts as acknowledged. SIGTERM stops the server, logs the totals and exits 0.

    python -m bench.baselines.raw_receive --listen 127.0.0.1:4319
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import grpc

SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
log = logging.getLogger("raw_receive")


class RequestCounter:
    """Export handler that only counts requests and their bytes."""

    def __init__(self) -> None:
        self.requests = 0
        self.request_bytes = 0

    async def export(self, body: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.requests += 1
        self.request_bytes += len(body)
        return b""  # an empty ExportMetricsServiceResponse: everything accepted


async def serve(listen: str) -> None:
    """Serve until SIGTERM or SIGINT."""
    counter = RequestCounter()
    # The same message limit as the baseline, so the two refuse the same requests.
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    handler = grpc.unary_unary_rpc_method_handler(counter.export)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),)
    )
    server.add_insecure_port(listen)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    log.info("listening on %s", listen)
    await stopping.wait()
    await server.stop(grace=5)
    log.info("stopped after %d requests, %d bytes", counter.requests, counter.request_bytes)


# Scenario: the raw-receive ceiling (no decode, no storage), as a load target.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:4319")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(serve(args.listen))


if __name__ == "__main__":
    main()
