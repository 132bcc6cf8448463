"""Authentication before a request is read.

grpc reads (and decompresses) a unary request before it calls the handler. This interceptor
runs when a call starts, with only its method and metadata: a call whose API key is missing
(where keys are required), unknown, wrong or revoked is answered UNAUTHENTICATED by a handler
that never reads the request, so its bytes are neither decompressed nor decoded, and nothing
of it is counted as received or stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from tidegate.errors import AuthenticationError
from tidegate.grpc_status import status_for
from tidegate.receiver import Authenticate
from tidegate.telemetry import Telemetry

log = logging.getLogger(__name__)

# A client retrying with a bad key is logged at most this often.
LOG_EVERY_SECONDS = 10.0


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses unauthenticated calls of the given methods (`/service/method` → signal name)."""

    def __init__(
        self, authenticate: Authenticate, methods: Mapping[str, str], telemetry: Telemetry
    ) -> None:
        self._authenticate = authenticate
        self._methods = dict(methods)
        self._telemetry = telemetry
        self._last_logged = 0.0

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        signal = self._methods.get(handler_call_details.method)
        if signal is None:
            return await continuation(handler_call_details)
        metadata = handler_call_details.invocation_metadata or ()
        try:
            self._authenticate(metadata)
        except AuthenticationError as exc:
            self._telemetry.requests.labels(signal, "", "UNAUTHENTICATED").inc()
            now = time.monotonic()
            if now - self._last_logged >= LOG_EVERY_SECONDS:
                self._last_logged = now
                log.warning("refused an unauthenticated %s request: %s", signal, exc)
            return _refusal(exc)
        return await continuation(handler_call_details)


def _refusal(exc: AuthenticationError) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that answers without reading the request: as a client-streaming method, it
    is handed an iterator it never advances."""
    status = status_for(exc).to_grpc_status()

    async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
        await context.abort_with_status(status)
        raise AssertionError("abort_with_status returns only by raising")

    return grpc.stream_unary_rpc_method_handler(refuse)
