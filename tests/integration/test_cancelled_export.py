"""An Export whose client gives up (its deadline passes) while the request is decoded or
spooled: the daemon finishes accepting it all the same, so the writer never waits for a
sequence number that no record carries, and a resend of the same bytes is answered and
stored once."""

from __future__ import annotations

from pathlib import Path

import grpc

from tests import payloads as p
from tests.conftest import RunningDaemon, make_config

# About 0.2 s of decoding here: the deadlines below pass while it runs (when one passes
# before the request reached the handler, the resend is its first delivery: still once).
BIG_POINTS = 200_000
DEADLINES = (0.05, 0.1, 0.15, 0.2, 0.3)


def stored(daemon: RunningDaemon) -> dict[str, int]:
    rows = daemon.query(
        """SELECT s.metric_name, sum(c.point_count) AS n FROM point_chunks c
           JOIN series s ON s.id = c.series_id GROUP BY 1"""
    )
    return {r["metric_name"]: r["n"] for r in rows}


def test_a_call_that_gives_up_during_its_decode_is_stored_once_and_stalls_nothing(
    database_dsn: str, tmp_path: Path
) -> None:
    daemon = RunningDaemon(make_config(database_dsn, tmp_path))
    try:
        values = [p.number_point(float(i), {"i": i % 5000}) for i in range(BIG_POINTS)]
        message = p.request([p.gauge("big", values)])
        requests = {}
        for deadline in DEADLINES:
            message.resource_metrics[0].scope_metrics[0].metrics[0].name = f"big-{deadline}"
            requests[f"big-{deadline}"] = message.SerializeToString()
        options = [("grpc.max_send_message_length", 64 * 2**20)]
        codes: dict[str, grpc.StatusCode] = {}
        with grpc.insecure_channel(daemon.grpc_target, options=options) as channel:
            call = channel.unary_unary(p.EXPORT_METHOD)
            for (name, request), deadline in zip(requests.items(), DEADLINES, strict=True):
                try:
                    call(request, timeout=deadline)
                except grpc.RpcError as exc:
                    codes[name] = exc.code()
        assert set(codes.values()) == {grpc.StatusCode.DEADLINE_EXCEEDED}, codes
        gave_up = list(codes)
        for name in gave_up:  # the clients retry
            p.export(daemon.grpc_target, requests[name])
        after = [p.number_point(float(i), {"i": i}) for i in range(10)]
        p.export(daemon.grpc_target, p.request([p.gauge("after", after)]).SerializeToString())

        # Before the fix the writer waited forever for the sequence numbers of the requests
        # whose calls went away mid-decode: this drain never returned.
        daemon.call(daemon.daemon.writer.drain(), timeout=30)
        assert stored(daemon) == {**dict.fromkeys(requests, BIG_POINTS), "after": 10}
    finally:
        daemon.stop()
