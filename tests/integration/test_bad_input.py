"""Every kind of bad input gets a definite answer, is counted, and loses nothing accepted."""

from __future__ import annotations

import math
import random
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import payloads as p
from tests.conftest import RunningDaemon

HOUR_NS = 3600 * 10**9
GOOD = {"kind": "good"}


def metric_samples(daemon: RunningDaemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{daemon.http_url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def stored_points(daemon: RunningDaemon) -> int:
    daemon.flush()
    rows = daemon.query(
        """SELECT (SELECT coalesce(sum(point_count), 0) FROM point_chunks)
                + (SELECT count(*) FROM histogram_points)
                + (SELECT count(*) FROM exp_histogram_points)
                + (SELECT count(*) FROM summary_points) AS n"""
    )
    return int(rows[0]["n"])


def with_good_points(bad: p.m.Metric) -> bytes:
    """A request holding ``bad`` between two valid gauge points, which must be stored."""
    good = p.gauge("good.gauge", [p.number_point(1.0, GOOD), p.number_point(2.0, {"n": "2"})])
    return p.request([bad, good]).SerializeToString()


def gauge_with(**kwargs: object) -> Callable[[], bytes]:
    return lambda: with_good_points(p.gauge("bad.gauge", [p.number_point(**kwargs)]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class PointCase:
    """One point of a request is rejected with ``reason``; the rest of the request is stored."""

    name: str
    build: Callable[[], bytes]
    reason: str


POINT_CASES = [
    PointCase("nan", gauge_with(value=math.nan), "non_finite_value"),
    PointCase("plus_inf", gauge_with(value=math.inf), "non_finite_value"),
    PointCase("minus_inf", gauge_with(value=-math.inf), "non_finite_value"),
    PointCase("zero_timestamp", gauge_with(value=1.0, time=0), "missing_timestamp"),
    PointCase("timestamp_1ns", gauge_with(value=1.0, time=1), "timestamp_too_old"),
    PointCase(
        "timestamp_year_2200",
        gauge_with(value=1.0, time=7_258_118_400 * 10**9),
        "timestamp_in_future",
    ),
    PointCase("no_value", gauge_with(value=None), "missing_value"),
    PointCase(
        "nul_in_name",
        lambda: with_good_points(p.gauge("bad\x00name", [p.number_point(1.0)])),
        "invalid_name",
    ),
    PointCase(
        "nul_in_attribute_value", gauge_with(value=1.0, attrs={"k": "a\x00b"}), "nul_in_attribute"
    ),
    PointCase(
        "nul_in_attribute_key", gauge_with(value=1.0, attrs={"a\x00": "b"}), "nul_in_attribute"
    ),
    PointCase(
        "ten_thousand_attributes",
        gauge_with(value=1.0, attrs={f"k{i}": i for i in range(10_000)}),
        "too_many_attributes",
    ),
    PointCase(
        "one_mib_attribute_value",
        gauge_with(value=1.0, attrs={"big": "x" * (1024 * 1024)}),
        "attribute_value_too_long",
    ),
    PointCase(
        "histogram_counts_do_not_match_bounds",
        lambda: with_good_points(
            p.histogram("bad.hist", [p.histogram_point([1.0, 2.0], [1, 1], 2.0)])
        ),
        "invalid_histogram",
    ),
]


@pytest.mark.parametrize("case", POINT_CASES, ids=[c.name for c in POINT_CASES])
def test_rejected_point_leaves_the_rest_of_the_request_stored(
    daemon: RunningDaemon, case: PointCase
) -> None:
    reply = p.export(daemon.grpc_target, case.build())
    assert reply.partial_success.rejected_data_points == 1
    assert case.reason in reply.partial_success.error_message
    assert stored_points(daemon) == 2
    samples = metric_samples(daemon)
    assert samples[("tidegate_points_rejected_total", (("reason", case.reason),))] == 1
    assert samples[("tidegate_points_stored_total", ())] == 2


def invalid_utf8_name() -> bytes:
    payload = p.request([p.gauge("BADNAME!", [p.number_point(1.0)])]).SerializeToString()
    return payload.replace(b"BADNAME!", b"BAD\xff\xfeME!")


REQUEST_CASES = {
    "truncated": lambda: with_good_points(p.gauge("x", [p.number_point(1.0)]))[:-7],
    "random_bytes": lambda: random.Random(7).randbytes(4096),
    "wrong_wire_type": lambda: b"\x08\x01",  # field 1 (resource_metrics) sent as a varint
    "invalid_utf8_in_name": invalid_utf8_name,
    "kvlist_10000_deep": lambda: p.nested_kvlist_request(10_000),
}


@pytest.mark.parametrize("build", REQUEST_CASES.values(), ids=list(REQUEST_CASES))
def test_undecodable_request_is_invalid_argument_and_changes_nothing(
    daemon: RunningDaemon, build: Callable[[], bytes]
) -> None:
    accepted_before = with_good_points(p.gauge("ok.before", [p.number_point(3.0)]))
    assert p.export(daemon.grpc_target, accepted_before).partial_success.rejected_data_points == 0
    with pytest.raises(grpc.RpcError) as failure:
        p.export(daemon.grpc_target, build())
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "do not retry" in str(failure.value.details())
    # The daemon keeps serving and everything accepted before is stored.
    after = p.request([p.gauge("ok.after", [p.number_point(4.0)])]).SerializeToString()
    assert p.export(daemon.grpc_target, after).partial_success.rejected_data_points == 0
    assert stored_points(daemon) == 4
    samples = metric_samples(daemon)
    invalid = (("signal", "metrics"), ("status", "INVALID_ARGUMENT"), ("tenant", "default"))
    assert samples[("tidegate_export_requests_total", invalid)] == 1


def test_empty_request_is_ok_and_stores_nothing(daemon: RunningDaemon) -> None:
    reply = p.export(daemon.grpc_target, b"")
    assert not reply.HasField("partial_success")
    assert stored_points(daemon) == 0


def test_oversized_request_is_resource_exhausted_without_retry_info(
    daemon: RunningDaemon,
) -> None:
    limit = daemon.daemon.config.grpc.max_message_bytes
    big = p.request(
        [p.gauge("big", [p.number_point(1.0, {"blob": "x" * (1024 * 1024)}) for _ in range(17)])]
    ).SerializeToString()
    assert len(big) > limit
    with pytest.raises(grpc.RpcError) as failure:
        p.export(daemon.grpc_target, big)
    assert failure.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(failure.value.trailing_metadata() or ())
    assert "grpc-status-details-bin" not in trailers
    assert stored_points(daemon) == 0


def test_gzip_compressed_request_is_stored(daemon: RunningDaemon) -> None:
    payload = p.request(
        [p.gauge("zipped", [p.number_point(float(i), {"i": i}) for i in range(100)])]
    ).SerializeToString()
    reply = p.export(daemon.grpc_target, payload, compression=grpc.Compression.Gzip)
    assert reply.partial_success.rejected_data_points == 0
    assert stored_points(daemon) == 100
    total = daemon.query("SELECT sum(value) AS s FROM metric_points")[0]["s"]
    assert total == sum(range(100))
