"""The spans of the trace benchmark: traces of a simulated shop of 12 services.

``ShopTraces.trace`` draws one trace from a seeded ``random.Random``: 8 spans over 2 or 3
services (a SERVER root; a CLIENT call to each other service, answered by its SERVER span;
database and cache CLIENT spans under those), or 2 spans (a SERVER root and one query). Spans
carry 4-8 attributes, one event on about a fifth of them and status ERROR on about 2 %. Ids are
left empty: ``bench.trace_payloads`` assigns them when it builds a request.
"""

from __future__ import annotations

import math
import random

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

NS = 1_000_000_000
MS = 1_000_000

SERVICES = (
    "frontend",
    "checkout",
    "cart",
    "payment",
    "inventory",
    "shipping",
    "catalog",
    "search",
    "recommendation",
    "accounts",
    "pricing",
    "notification",
)
NOUNS = ("orders", "items", "users", "sessions", "quotes", "reviews", "carts", "stock")
DATABASES = ("postgresql", "mysql", "mongodb")
USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
)
ERROR_SHARE = 0.02
EVENT_SHARE = 0.2
HTTP_SCOPE = InstrumentationScope(name="opentelemetry.instrumentation.http", version="0.48b0")
DB_SCOPE = InstrumentationScope(name="opentelemetry.instrumentation.dbapi", version="0.48b0")
SERVER, CLIENT = Span.SpanKind.SPAN_KIND_SERVER, Span.SpanKind.SPAN_KIND_CLIENT

# One span of a trace: (service, scope "http" or "db", span, parent position within the trace).
TraceSpan = tuple[str, str, Span, int | None]


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span(name: str, kind: int, start: int, end: int, attributes: list[KeyValue]) -> Span:
    return Span(
        name=name,
        kind=kind,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=attributes,
    )


def _resource(service: str, rng: random.Random) -> Resource:
    pod = f"{service}-{rng.randrange(16**10):010x}-{rng.randrange(36**5):05d}"
    return Resource(
        attributes=[
            _kv("service.name", service),
            _kv("service.namespace", "shop"),
            _kv("service.version", f"2.{rng.randrange(20)}.{rng.randrange(10)}"),
            _kv("service.instance.id", f"{rng.getrandbits(128):032x}"),
            _kv("host.name", pod),
            _kv("k8s.namespace.name", "shop-prod"),
            _kv("deployment.environment", "production"),
            _kv("telemetry.sdk.language", "python"),
        ]
    )


class ShopTraces:
    """Draws traces from ``rng``, each started within the minute before ``now_ns``; holds
    the resource (8 attributes) of every service."""

    def __init__(self, rng: random.Random, now_ns: int) -> None:
        self.rng = rng
        self.now_ns = now_ns
        self.resources = {s: _resource(s, rng) for s in SERVICES}

    def _times(self, start: int, parent_end: int) -> tuple[int, int]:
        """A child interval inside ``[start, parent_end]``."""
        room = max(parent_end - start, 2)
        begin = start + self.rng.randrange(1, max(2, room // 10))
        length = max(1, int(room * self.rng.uniform(0.3, 0.8)))
        return begin, min(parent_end, begin + length)

    def _decorate(self, span: Span, kind: str) -> None:
        rng = self.rng
        if rng.random() < ERROR_SHARE:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="upstream failed"))
            span.events.add(
                time_unix_nano=span.end_time_unix_nano - rng.randrange(1, 1000) * 1000,
                name="exception",
                attributes=[
                    _kv("exception.type", "TimeoutError"),
                    _kv("exception.message", f"timed out after {rng.randrange(1, 30)} s"),
                ],
            )
        elif rng.random() < EVENT_SHARE:
            name, attrs = (
                ("cache.miss", [_kv("cache.key", f"k{rng.randrange(10**6)}")])
                if kind == "db"
                else ("retry", [_kv("http.resend_count", rng.randrange(1, 3))])
            )
            span.events.add(
                time_unix_nano=span.start_time_unix_nano + rng.randrange(1, 1000) * 1000,
                name=name,
                attributes=attrs,
            )

    def _server(self, service: str, start: int, end: int) -> Span:
        rng = self.rng
        noun = rng.choice(NOUNS)
        method = rng.choice(("GET", "GET", "GET", "POST", "PUT"))
        route = f"/api/{service}/{noun}/{{id}}"
        status = 200 if rng.random() > 0.05 else rng.choice((404, 409, 500))
        target = route.replace("{id}", str(rng.randrange(10**7)))
        span = _span(
            f"{method} {route}",
            SERVER,
            start,
            end,
            [
                _kv("http.method", method),
                _kv("http.route", route),
                _kv("http.target", target),
                _kv("http.status_code", status),
                _kv("http.scheme", "http"),
                _kv("net.host.name", f"{service}.shop.svc"),
            ],
        )
        if rng.random() < 0.5:
            span.attributes.append(_kv("user_agent.original", rng.choice(USER_AGENTS)))
            span.attributes.append(_kv("http.client_ip", f"10.{rng.randrange(256)}.0.7"))
        self._decorate(span, "http")
        return span

    def _call(self, peer: str, start: int, end: int) -> Span:
        rng = self.rng
        method = rng.choice(("GET", "GET", "POST"))
        noun = rng.choice(NOUNS)
        url = f"http://{peer}.shop.svc:8080/api/{peer}/{noun}/"
        attributes = [
            _kv("http.method", method),
            _kv("http.url", url),
            _kv("http.status_code", 200),
            _kv("net.peer.name", f"{peer}.shop.svc"),
            _kv("net.peer.port", 8080),
        ]
        span = _span(f"{method} {peer}", CLIENT, start, end, attributes)
        self._decorate(span, "http")
        return span

    def _query(self, service: str, start: int, end: int, cache: bool) -> Span:
        rng = self.rng
        table = rng.choice(NOUNS)
        if cache:
            key = f"{service}:{table}:{rng.randrange(10**6)}"
            attrs = [
                _kv("db.system", "redis"),
                _kv("db.operation", "GET"),
                _kv("db.statement", f"GET {key}"),
                _kv("net.peer.name", f"redis-{service}.shop.svc"),
                _kv("net.peer.port", 6379),
            ]
            name = "GET"
        else:
            system = DATABASES[SERVICES.index(service) % len(DATABASES)]
            operation = rng.choice(("SELECT", "SELECT", "UPDATE", "INSERT"))
            attrs = [
                _kv("db.system", system),
                _kv("db.name", service),
                _kv("db.operation", operation),
                _kv("db.statement", f"{operation} * FROM {table} WHERE id = $1"),
                _kv("net.peer.name", f"{system}-{service}.shop.svc"),
                _kv("net.peer.port", 5432),
            ]
            name = f"{operation} {service}.{table}"
        span = _span(name, CLIENT, start, end, attrs)
        self._decorate(span, "db")
        return span

    def trace(self, spans_per_trace: int) -> list[TraceSpan]:
        """One trace of ``spans_per_trace`` (8 or 2) spans, the root first."""
        rng = self.rng
        start = self.now_ns - rng.randrange(60 * NS)
        end = start + int(rng.lognormvariate(math.log(40 * MS), 0.6)) + MS
        if spans_per_trace == 2:
            a = rng.choice(SERVICES)
            root = self._server(a, start, end)
            return [
                (a, "http", root, None),
                (a, "db", self._query(a, *self._times(start, end), cache=False), 0),
            ]
        a, b, c = rng.sample(SERVICES, 3)
        if rng.random() < 0.5:
            c = b  # two services
        out: list[TraceSpan] = [(a, "http", self._server(a, start, end), None)]
        half = start + (end - start) // 2
        for peer, (s, e) in ((b, self._times(start, half)), (c, self._times(half, end))):
            call = len(out)
            out.append((a, "http", self._call(peer, s, e), 0))
            s2, e2 = self._times(s, e)
            server = len(out)
            out.append((peer, "http", self._server(peer, s2, e2), call))
            first, second = self._times(s2, e2), self._times(s2, e2)
            out.append((peer, "db", self._query(peer, *first, cache=False), server))
            if len(out) < spans_per_trace - 1:
                out.append((peer, "db", self._query(peer, *second, cache=True), server))
        assert len(out) == spans_per_trace, len(out)
        return out
