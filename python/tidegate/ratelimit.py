"""Per-tenant ingest limits: token buckets for points/s, spans/s and requests/s.

A request is admitted while its buckets have tokens; the points or spans it carried are charged
once decoding has counted them, which may leave a bucket in debt. Admission then waits until the
debt is paid back, so the long-run rate is the configured one even though a request's size is
only known after it was admitted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from tidegate.errors import ThrottledError

Clock = Callable[[], float]
# (tenant, kind) -> (rate per second, burst), or None for no limit of that kind.
LimitsOf = Callable[[str, str], tuple[float, float] | None]

KINDS = ("points", "spans", "requests")
# The kind of items each signal is charged for.
ITEM_KIND = {"metrics": "points", "traces": "spans"}
# A client is never told to retry sooner than this; delays are rounded up to it.
RETRY_RESOLUTION_SECONDS = 0.1


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` per second; may go negative (debt)."""

    __slots__ = ("_clock", "_updated", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        _check(rate, burst)
        self.rate = rate
        self.burst = burst
        self.tokens = burst  # a new bucket starts full
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self._updated = now

    def available(self) -> float:
        """The tokens in the bucket now (negative while in debt)."""
        self._refill()
        return self.tokens

    def reconfigure(self, rate: float, burst: float) -> None:
        """Change rate and burst in place: the fill is kept (clamped to the new burst), so a
        live change neither refills a bucket nor forgives its debt."""
        _check(rate, burst)
        self._refill()  # the time so far counts at the old rate
        self.rate = rate
        self.burst = burst
        self.tokens = min(self.tokens, burst)

    def admissible(self, cost: float = 0.0) -> bool:
        """Whether a request costing ``cost`` now may pass: the bucket has more than 0 tokens
        and at least ``cost``."""
        self._refill()
        return self.tokens > 0 and self.tokens >= cost

    def take(self, cost: float) -> None:
        """Remove ``cost`` tokens unconditionally; the bucket may go into debt."""
        self._refill()
        self.tokens -= cost

    def delay(self, cost: float = 0.0) -> float:
        """Seconds until ``admissible(cost)`` holds again (0 when it holds now)."""
        self._refill()
        return max(0.0, (cost - self.tokens) / self.rate)


def _check(rate: float, burst: float) -> None:
    if not (math.isfinite(rate) and rate > 0 and math.isfinite(burst) and burst > 0):
        raise ValueError(f"a rate limit needs a finite rate and burst above 0, got {rate}/{burst}")


@dataclass(slots=True)
class TenantBuckets:
    """The buckets of one limited tenant; None where that kind is unlimited."""

    requests: TokenBucket | None
    points: TokenBucket | None
    spans: TokenBucket | None

    def of_kind(self, kind: str) -> TokenBucket | None:
        bucket: TokenBucket | None = getattr(self, kind)
        return bucket


# Marks a tenant not seen yet (None means seen and unlimited).
_UNSEEN = TenantBuckets(None, None, None)


def _throttled(tenant: str, limit: str, bucket: TokenBucket, delay: float) -> ThrottledError:
    """The refusal of a request of ``tenant`` over its ``limit`` (points, spans, requests)."""
    retry = max(
        RETRY_RESOLUTION_SECONDS,
        # round() first, so 0.3 s (0.30000000000000004 * 10) is not taken up to 0.4 s
        math.ceil(round(delay / RETRY_RESOLUTION_SECONDS, 6)) * RETRY_RESOLUTION_SECONDS,
    )
    retry = round(retry, 1)
    return ThrottledError(
        f"tenant {tenant!r} is over its limit of {_number(bucket.rate)} {limit}/s "
        f"(burst {_number(bucket.burst)}): retry after {retry:g} s",
        retry,
        tenant=tenant,
        limit=limit,
    )


def _limits_of(tenant: str, limits: LimitsOf) -> dict[str, tuple[float, float]]:
    """The tenant's limited kinds and their (rate, burst), validated."""
    wanted = {}
    for kind in KINDS:
        limit = limits(tenant, kind)
        if limit is None:
            continue
        rate, burst = limit
        _check(rate, burst)
        if kind == "requests" and burst < 1:
            raise ValueError(f"the requests limit of tenant {tenant!r} needs a burst >= 1")
        wanted[kind] = (float(rate), float(burst))
    return wanted


def _number(value: float) -> str:
    """1000000 rather than 1e+06; 2.5 as it is."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class TenantLimiter:
    """Every tenant's buckets, created when a tenant is first seen and kept in step with the
    live limits by ``configure``."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._limits: LimitsOf = lambda _tenant, _kind: None
        # tenant -> its buckets, or None when the tenant has no limit at all (the common case:
        # one dict lookup per request).
        self._tenants: dict[str, TenantBuckets | None] = {}

    def configure(self, limits: LimitsOf) -> None:
        """Adopt new limits (call on every live change). Existing buckets change in place,
        keeping their fill; a removed limit drops its bucket. Raises ValueError, changing
        nothing, when a limit is not a finite positive rate and burst (requests: burst >= 1)."""
        wanted = {tenant: _limits_of(tenant, limits) for tenant in self._tenants}
        self._limits = limits
        self._tenants = {tenant: self._buckets(tenant, w) for tenant, w in wanted.items()}

    def _buckets(self, tenant: str, wanted: dict[str, tuple[float, float]]) -> TenantBuckets | None:
        if not wanted:
            return None
        current = self._tenants.get(tenant)
        buckets: dict[str, TokenBucket | None] = {}
        for kind in KINDS:
            limit = wanted.get(kind)
            bucket = current.of_kind(kind) if current is not None else None
            if limit is None:
                bucket = None
            elif bucket is None:
                bucket = TokenBucket(*limit, clock=self._clock)
            else:
                bucket.reconfigure(*limit)
            buckets[kind] = bucket
        return TenantBuckets(**buckets)

    def admit(self, tenant: str, signal: str) -> None:
        """Let a request of ``signal`` ("metrics" or "traces") in, taking one request token,
        or raise ThrottledError with the delay until it would pass."""
        buckets = self._tenants.get(tenant, _UNSEEN)
        if buckets is _UNSEEN:
            buckets = self._tenants[tenant] = self._buckets(
                tenant, _limits_of(tenant, self._limits)
            )
        if buckets is None:
            return
        items = buckets.of_kind(ITEM_KIND[signal])
        # Check both before taking anything, so a refused request costs no request token.
        if items is not None and not items.admissible():
            raise _throttled(tenant, ITEM_KIND[signal], items, items.delay())
        requests = buckets.requests
        if requests is not None:
            if not requests.admissible(1):
                raise _throttled(tenant, "requests", requests, requests.delay(1))
            requests.take(1)

    def charge(self, tenant: str, signal: str, items: int) -> None:
        """Charge the points or spans an admitted request carried, once they are counted."""
        buckets = self._tenants.get(tenant)
        if buckets is None:
            return
        bucket = buckets.of_kind(ITEM_KIND[signal])
        if bucket is not None:
            bucket.take(items)
