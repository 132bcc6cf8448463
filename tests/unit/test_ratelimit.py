"""Token buckets and the per-tenant limiter, on a clock the tests move by hand."""

from __future__ import annotations

import re

import pytest

from tidegate.errors import ThrottledError
from tidegate.ratelimit import LimitsOf, TenantLimiter, TokenBucket


class Clock:
    """A monotonic clock that only moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_bucket_starts_full_and_refills_at_rate_up_to_burst(clock: Clock) -> None:
    bucket = TokenBucket(rate=100, burst=500, clock=clock)
    assert bucket.available() == 500
    bucket.take(450)
    assert bucket.available() == 50
    clock.advance(2)
    assert bucket.available() == 250
    clock.advance(60)
    assert bucket.available() == 500  # never above the burst


def test_debt_then_recovery_honours_the_long_run_rate(clock: Clock) -> None:
    bucket = TokenBucket(rate=1000, burst=1000, clock=clock)
    assert bucket.admissible()
    bucket.take(3000)  # a request of 3000 points, counted after it was admitted
    assert bucket.available() == -2000
    assert not bucket.admissible()
    assert bucket.delay() == 2.0
    clock.advance(1.5)
    assert bucket.delay() == 0.5
    assert not bucket.admissible()
    clock.advance(0.5)
    assert bucket.available() == 0
    assert not bucket.admissible()  # points need more than 0 tokens
    clock.advance(0.001)
    assert bucket.admissible()
    assert bucket.delay() == 0


def test_requests_need_a_whole_token(clock: Clock) -> None:
    bucket = TokenBucket(rate=2, burst=1, clock=clock)
    assert bucket.admissible(1)
    bucket.take(1)
    clock.advance(0.25)
    assert bucket.available() == 0.5
    assert bucket.admissible()  # more than 0 tokens...
    assert not bucket.admissible(1)  # ...but not one whole request
    assert bucket.delay(1) == 0.25


def test_reconfigure_in_place_keeps_the_fill(clock: Clock) -> None:
    bucket = TokenBucket(rate=10, burst=100, clock=clock)
    bucket.take(70)
    clock.advance(1)  # accrued at the old rate: 30 + 10
    bucket.reconfigure(rate=50, burst=200)
    assert bucket.available() == 40  # a bigger burst is not a refill
    clock.advance(1)
    assert bucket.available() == 90
    clock.advance(10)
    assert bucket.available() == 200


def test_reconfigure_clamps_to_a_smaller_burst_and_keeps_debt(clock: Clock) -> None:
    bucket = TokenBucket(rate=10, burst=100, clock=clock)
    bucket.reconfigure(rate=10, burst=20)
    assert bucket.available() == 20
    bucket.take(50)
    bucket.reconfigure(rate=5, burst=1000)
    assert bucket.available() == -30  # debt is not forgiven
    assert bucket.delay() == 6.0


@pytest.mark.parametrize(("rate", "burst"), [(0, 10), (-1, 10), (10, 0), (float("inf"), 10)])
def test_bucket_refuses_nonsense(clock: Clock, rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="finite rate and burst above 0"):
        TokenBucket(rate, burst, clock)


def limits_table(table: dict[tuple[str, str], tuple[float, float]]) -> LimitsOf:
    """A configure() function: own limit, else the `*` one, else None."""

    def limits(tenant: str, kind: str) -> tuple[float, float] | None:
        return table.get((tenant, kind), table.get(("*", kind)))

    return limits


def test_unlimited_tenant_is_never_throttled(clock: Clock) -> None:
    limiter = TenantLimiter(clock)
    for _ in range(10_000):
        limiter.admit("default", "metrics")
        limiter.charge("default", "metrics", 1_000_000)


def test_points_limit_throttles_after_debt_with_retry_after(clock: Clock) -> None:
    limiter = TenantLimiter(clock)
    limiter.configure(limits_table({("acme", "points"): (1000, 2000)}))
    limiter.admit("acme", "metrics")
    limiter.charge("acme", "metrics", 2500)  # 500 in debt
    with pytest.raises(ThrottledError) as raised:
        limiter.admit("acme", "metrics")
    error = raised.value
    assert isinstance(error, ThrottledError)
    assert (error.tenant, error.limit, error.retry_after_seconds) == ("acme", "points", 0.5)
    assert str(error) == (
        "tenant 'acme' is over its limit of 1000 points/s (burst 2000): retry after 0.5 s"
    )
    limiter.admit("acme", "traces")  # spans are not limited
    clock.advance(0.5)
    with pytest.raises(ThrottledError):  # exactly 0 tokens is not enough
        limiter.admit("acme", "metrics")
    clock.advance(0.01)
    limiter.admit("acme", "metrics")


@pytest.mark.parametrize(
    ("debt", "retry_after"),
    [(1, 0.1), (100, 0.1), (101, 0.2), (300, 0.3), (301, 0.4), (12_345, 12.4)],
)
def test_retry_after_is_rounded_up_to_a_tenth_and_at_least_one(
    clock: Clock, debt: int, retry_after: float
) -> None:
    limiter = TenantLimiter(clock)
    limiter.configure(limits_table({("acme", "spans"): (1000, 1000)}))
    limiter.admit("acme", "traces")
    limiter.charge("acme", "traces", 1000 + debt)
    with pytest.raises(ThrottledError) as raised:
        limiter.admit("acme", "traces")
    assert raised.value.retry_after_seconds == retry_after


def test_requests_per_second_limit(clock: Clock) -> None:
    limiter = TenantLimiter(clock)
    limiter.configure(limits_table({("acme", "requests"): (2, 3)}))
    for _ in range(3):
        limiter.admit("acme", "metrics")
    with pytest.raises(ThrottledError) as raised:
        limiter.admit("acme", "traces")  # one requests bucket for both signals
    assert raised.value.limit == "requests"
    assert raised.value.retry_after_seconds == 0.5
    assert "limit of 2 requests/s (burst 3)" in str(raised.value)
    clock.advance(0.5)
    limiter.admit("acme", "traces")
    with pytest.raises(ThrottledError):
        limiter.admit("acme", "traces")


def test_refused_request_takes_no_request_token(clock: Clock) -> None:
    limiter = TenantLimiter(clock)
    limiter.configure(limits_table({("acme", "requests"): (1, 1), ("acme", "points"): (10, 10)}))
    limiter.admit("acme", "metrics")
    limiter.charge("acme", "metrics", 20)  # points 10 in debt: 1 s; requests empty: 1 s
    clock.advance(0.9)
    with pytest.raises(ThrottledError) as raised:
        limiter.admit("acme", "metrics")
    assert raised.value.limit == "points"
    clock.advance(0.2)
    limiter.admit("acme", "metrics")  # the request token was still there


def test_tenants_are_isolated_and_star_is_everyones_default(clock: Clock) -> None:
    limiter = TenantLimiter(clock)
    limiter.configure(
        limits_table({("*", "points"): (100, 100), ("big", "points"): (10_000, 10_000)})
    )
    for tenant in ("a", "b", "big"):
        limiter.admit(tenant, "metrics")
        limiter.charge(tenant, "metrics", 150)
    for tenant in ("a", "b"):  # each has its own bucket, each 50 in debt
        with pytest.raises(ThrottledError) as raised:
            limiter.admit(tenant, "metrics")
        assert (raised.value.tenant, raised.value.retry_after_seconds) == (tenant, 0.5)
    limiter.admit("big", "metrics")
    limiter.admit("new", "metrics")  # a tenant seen for the first time gets the default


def test_configure_changes_buckets_in_place_and_drops_removed_limits(clock: Clock) -> None:
    limiter = TenantLimiter(clock)
    limiter.configure(limits_table({("acme", "points"): (100, 100)}))
    limiter.admit("acme", "metrics")
    limiter.charge("acme", "metrics", 300)  # 200 in debt
    # A higher rate applies to the debt as it is: 200 / 400 = 0.5 s, not a fresh bucket.
    limiter.configure(limits_table({("acme", "points"): (400, 1000)}))
    with pytest.raises(ThrottledError) as raised:
        limiter.admit("acme", "metrics")
    assert raised.value.retry_after_seconds == 0.5
    limiter.configure(limits_table({}))  # limit removed: the debt goes with the bucket
    limiter.admit("acme", "metrics")
    limiter.configure(limits_table({("acme", "points"): (100, 100)}))
    limiter.admit("acme", "metrics")  # a new bucket starts full
    limiter.charge("acme", "metrics", 100)
    with pytest.raises(ThrottledError):
        limiter.admit("acme", "metrics")


def test_invalid_limits_change_nothing(clock: Clock) -> None:
    limiter = TenantLimiter(clock)
    limiter.configure(limits_table({("a", "points"): (100, 100), ("b", "points"): (100, 100)}))
    limiter.admit("a", "metrics")
    limiter.admit("b", "metrics")
    bad = limits_table({("a", "points"): (5, 5), ("b", "requests"): (1, 0.5)})
    with pytest.raises(ValueError, match="requests limit of tenant 'b' needs a burst >= 1"):
        limiter.configure(bad)
    limiter.charge("a", "metrics", 99)
    limiter.admit("a", "metrics")  # still a burst of 100, not 5


@pytest.mark.parametrize(
    ("rate", "burst", "shown"),
    [(1e6, 2e6, "1000000 spans/s (burst 2000000)"), (2.5, 10, "2.5 spans/s (burst 10)")],
)
def test_message_shows_the_limit_as_configured(
    clock: Clock, rate: float, burst: float, shown: str
) -> None:
    limiter = TenantLimiter(clock)
    limiter.configure(limits_table({("acme", "spans"): (rate, burst)}))
    limiter.admit("acme", "traces")
    limiter.charge("acme", "traces", int(burst) + 1)
    with pytest.raises(ThrottledError, match=re.escape(f"limit of {shown}: retry after")):
        limiter.admit("acme", "traces")
