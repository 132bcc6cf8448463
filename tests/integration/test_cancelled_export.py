"""An Export whose client gives up (its deadline passes) while the request is decoded or
spooled: the daemon finishes accepting it all the same, so the writer never waits for a
sequence number that no record carries, and a resend of the same bytes is answered and
stored once."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest

from tests import payloads as p
from tests.conftest import RunningDaemon, make_config
from tests.integration.test_spool import sample, stored_points

# 0.06-0.2 s of decoding here: some of the deadlines below pass while it runs (one that
# passes before the request reached the handler makes its resend the first delivery).
BIG_POINTS = 200_000
DEADLINES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def test_a_call_that_gives_up_during_its_decode_is_stored_once_and_stalls_nothing(
    database_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tidegate.receiver")
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
        # At least one call went away while its request was being accepted: the case tested.
        assert "request of a call that went away: accepted all the same" in caplog.text
        for name in codes:  # the clients retry
            # Before the fix this waited for the in-flight marker of the call that went
            # away, which nothing settled, until its deadline.
            p.export(daemon.grpc_target, requests[name])
        after = [p.number_point(float(i), {"i": i}) for i in range(10)]
        p.export(daemon.grpc_target, p.request([p.gauge("after", after)]).SerializeToString())

        # And the writer waited forever for the sequence numbers of the requests whose calls
        # went away mid-decode: this drain never returned.
        daemon.call(daemon.daemon.writer.drain(), timeout=30)
        assert stored_points(daemon) == {**dict.fromkeys(requests, BIG_POINTS), "after": 10}
        # Each call that went away mid-acceptance is counted (and logged once its request is
        # in); one that gave up before reaching the handler never was a call to the daemon.
        went_away = caplog.text.count("request of a call that went away")
        labels = {"signal": "metrics", "tenant": "default", "status": "CANCELLED"}
        assert sample(daemon, "tidegate_export_requests_total", labels) == went_away
    finally:
        daemon.stop()
