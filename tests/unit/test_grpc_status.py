"""The one mapping from errors to gRPC status codes, and the RetryInfo it attaches."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from tidegate.errors import BackpressureError, DecodeError, SpoolFatalError
from tidegate.grpc_status import RETRY_INFO_TRAILER, status_for

DETAILS_KEY = "grpc-status-details-bin"


def decoded_details(status: grpc.Status) -> status_pb2.Status:
    trailers = dict(status.trailing_metadata)
    return status_pb2.Status.FromString(trailers[DETAILS_KEY])


@pytest.mark.parametrize(
    ("error", "code", "retryable", "delay"),
    [
        (DecodeError("cannot decode"), grpc.StatusCode.INVALID_ARGUMENT, False, None),
        (BackpressureError("queue full", 2.5), grpc.StatusCode.UNAVAILABLE, True, 2.5),
        (RuntimeError("boom"), grpc.StatusCode.INTERNAL, False, None),
        (SpoolFatalError("fsync failed"), grpc.StatusCode.UNAVAILABLE, True, 5.0),
    ],
)
def test_each_error_maps_to_one_status(
    error: Exception, code: grpc.StatusCode, retryable: bool, delay: float | None
) -> None:
    answer = status_for(error)
    assert answer.code is code
    assert answer.retryable is retryable
    assert answer.retry_after_seconds == delay
    status = answer.to_grpc_status()
    assert status.code is code
    details = decoded_details(status)
    assert details.code == code.value[0]
    retry_infos = [d for d in details.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    trailers = dict(status.trailing_metadata)
    if delay is None:
        assert retry_infos == []
        assert RETRY_INFO_TRAILER not in trailers
    else:
        info = error_details_pb2.RetryInfo()
        retry_infos[0].Unpack(info)
        seconds = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
        assert seconds == delay
        # The same RetryInfo as a trailer of its own, where the Python exporter reads it.
        alone = error_details_pb2.RetryInfo.FromString(trailers[RETRY_INFO_TRAILER])
        assert alone == info


def test_messages_tell_the_client_what_to_do() -> None:
    assert "do not retry" in status_for(DecodeError("bad")).message
    assert "retry after 2.5 s" in status_for(BackpressureError("full", 2.5)).message
    # Internal details (the exception text) never leak to clients.
    assert "secret" not in status_for(RuntimeError("secret")).message
