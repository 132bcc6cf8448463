"""`TraceCore.set_sampling` from Python: ratios are checked, a trace is kept exactly when its
randomness (the trace id's rightmost 7 bytes) is at least the threshold (1 - ratio) * 2**56,
`check` and `ingest` report the same sampled-out spans, and a tenant's spans get an index row
of their own."""

from __future__ import annotations

import math

import pytest

from tests.trace_payloads import span, trace_request
from tidegate._core import TraceCore, TraceSettings

NOW = 1_764_237_600_000_000_000


def trace_id(randomness: int) -> bytes:
    """A trace id whose rightmost 7 bytes are ``randomness`` (never all zeros)."""
    return b"\x5a" * 9 + randomness.to_bytes(7, "big")


# Trace ids of sampling value 0.25 and 0.75 (randomness over 2**56).
QUARTER = trace_id(2**54)
THREE_QUARTERS = trace_id(3 * 2**54)


@pytest.mark.parametrize(
    ("ratios", "default", "named"),
    [
        ({"api": 1.5}, 1.0, '"api"'),
        ({"api": -0.1}, 1.0, '"api"'),
        ({"api": math.nan}, 1.0, '"api"'),
        ({}, 2.0, "the default"),
    ],
)
def test_a_ratio_outside_zero_to_one_is_refused_by_name(
    ratios: dict[str, float], default: float, named: str
) -> None:
    core = TraceCore(TraceSettings())
    with pytest.raises(ValueError, match=named):
        core.set_sampling(ratios, default)


@pytest.mark.parametrize(
    ("randomness", "ratio", "kept"),
    [
        (0, 1.0, True),  # threshold 0: everything is kept
        (2**56 - 1, 0.0, False),  # threshold 2**56: nothing is
        (2**54, 0.75, True),  # at the threshold 2**54
        (2**54 - 1, 0.75, False),  # one below it
        (2**55, 0.5, True),  # at the threshold 2**55
        (2**55 - 1, 0.5, False),
        (3 * 2**54, 0.25, True),  # at the threshold 3 * 2**54
        (3 * 2**54 - 1, 0.25, False),
        (2**56 - 1, 2**-56, True),  # the smallest ratio above 0 keeps only the largest
        (2**56 - 2, 2**-56, False),
        (2**56 - 1, 2**-57, False),  # below one value in 2**56: the threshold rounds up
    ],
)
def test_a_trace_is_kept_from_its_threshold_up(randomness: int, ratio: float, kept: bool) -> None:
    core = TraceCore(TraceSettings())
    core.set_sampling({}, default=ratio)
    summary = core.ingest(trace_request("api", [span(trace_id(randomness), 1, "op")]), NOW)
    assert (summary.accepted_spans, summary.sampled_out_spans) == (int(kept), int(not kept))


@pytest.mark.parametrize(
    ("ratio", "kept"),
    [
        (0.0, []),
        (0.25, [THREE_QUARTERS]),
        (0.5, [THREE_QUARTERS]),
        (0.75, [QUARTER, THREE_QUARTERS]),
        (1.0, [QUARTER, THREE_QUARTERS]),
    ],
)
def test_check_and_ingest_report_the_same_sampled_out_spans(
    ratio: float, kept: list[bytes]
) -> None:
    accepted, sampled_out = 2 * len(kept), 4 - 2 * len(kept)
    core = TraceCore(TraceSettings())
    core.set_sampling({"api": ratio}, default=0.0)
    spans = [span(t, s, "op") for t in (QUARTER, THREE_QUARTERS) for s in (1, 2)]
    request = trace_request("api", spans)
    for summary in (core.check(request, NOW, tenant="acme"), core.ingest(request, NOW)):
        counts = (summary.accepted_spans, summary.sampled_out_spans, summary.rejected_spans)
        assert counts == (accepted, sampled_out, 0)
        assert summary.error_message == ""
    assert core.pending_spans == accepted
    block = core.take_block(NOW, force=True)
    stored = (
        [] if block is None else [t for t in (QUARTER, THREE_QUARTERS) if t in block.index_copy]
    )
    assert stored == kept


def test_one_trace_id_of_two_tenants_is_two_frames() -> None:
    core = TraceCore(TraceSettings())
    for tenant in ("acme", "bolt", ""):
        core.ingest(trace_request("api", [span(QUARTER, 1, tenant)]), NOW, tenant=tenant)
    block = core.take_block(NOW, force=True)
    assert block is not None
    assert (block.traces, block.spans) == (3, 3)
    # The tenant is the last field of each row of the binary COPY stream.
    for tenant in (b"acme", b"bolt", b"default"):
        assert len(tenant).to_bytes(4, "big") + tenant in block.index_copy
