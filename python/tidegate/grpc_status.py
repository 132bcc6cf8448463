"""The one mapping from tidegate's errors to gRPC status codes.

Retryable answers carry a ``google.rpc.RetryInfo``, which the OTLP exporters read to decide how
long to back off, as the OTLP specification asks: as a detail of the status
(``grpc-status-details-bin``, where the specification puts it) and as its own trailer
(``google.rpc.retryinfo-bin``, where the OpenTelemetry Python exporter looks for it).
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tidegate.errors import (
    AuthenticationError,
    BackpressureError,
    DecodeError,
    SpoolError,
    ThrottledError,
)

# What a client is told to wait when the spool cannot take its request (the daemon stops).
SPOOL_FAILED_RETRY_SECONDS = 5.0


RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"


class _Status(namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    """A status with trailing metadata of our choosing (grpc.Status is abstract)."""


@dataclass(frozen=True)
class ErrorStatus:
    """How one error is answered."""

    code: grpc.StatusCode
    message: str
    retryable: bool
    retry_after_seconds: float | None = None

    def to_grpc_status(self) -> grpc.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        if self.retry_after_seconds is not None:
            seconds = int(self.retry_after_seconds)
            nanos = int((self.retry_after_seconds - seconds) * 1e9)
            detail = error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos)
            )
            status.details.add().Pack(detail)
            with_details = rpc_status.to_status(status)
            return _Status(
                with_details.code,
                with_details.details,
                (*with_details.trailing_metadata, (RETRY_INFO_TRAILER, detail.SerializeToString())),
            )
        return rpc_status.to_status(status)


def status_for(exc: BaseException) -> ErrorStatus:
    """Answer for an error raised while handling an Export request."""
    if isinstance(exc, DecodeError):
        # Bad input stays bad: a retry would fail the same way.
        return ErrorStatus(grpc.StatusCode.INVALID_ARGUMENT, f"{exc}; do not retry", False)
    if isinstance(exc, AuthenticationError):
        return ErrorStatus(grpc.StatusCode.UNAUTHENTICATED, str(exc), False)
    if isinstance(exc, ThrottledError):
        # Retryable only with RetryInfo, as the OTLP specification says for this code.
        return ErrorStatus(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{exc}; retry after {exc.retry_after_seconds:g} s",
            True,
            exc.retry_after_seconds,
        )
    if isinstance(exc, BackpressureError):
        # The data is fine and will be accepted once the writer catches up.
        return ErrorStatus(
            grpc.StatusCode.UNAVAILABLE,
            f"{exc}; retry after {exc.retry_after_seconds:g} s",
            True,
            exc.retry_after_seconds,
        )
    if isinstance(exc, SpoolError):
        # Not acknowledged, so nothing is lost: the client retries once a daemon is back.
        return ErrorStatus(
            grpc.StatusCode.UNAVAILABLE,
            f"the spool cannot take requests now ({exc}); retry",
            True,
            SPOOL_FAILED_RETRY_SECONDS,
        )
    return ErrorStatus(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}", False)
