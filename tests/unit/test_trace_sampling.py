"""`TraceCore.set_sampling` from Python: ratios are checked, `check` and `ingest` report the
same sampled-out spans, and a tenant's spans get an index row of their own."""

from __future__ import annotations

import math

import pytest

from tests.trace_payloads import span, trace_request
from tidegate._core import TraceCore, TraceSettings

NOW = 1_764_237_600_000_000_000
# Trace ids of sampling value 0.25 and 0.75 (rightmost 7 bytes over 2**56).
QUARTER = bytes(9) + (2**54).to_bytes(7, "big")
THREE_QUARTERS = bytes(9) + (3 * 2**54).to_bytes(7, "big")


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
    ("ratio", "accepted", "sampled_out"), [(0.0, 0, 4), (0.5, 2, 2), (1.0, 4, 0)]
)
def test_check_and_ingest_report_the_same_sampled_out_spans(
    ratio: float, accepted: int, sampled_out: int
) -> None:
    core = TraceCore(TraceSettings())
    core.set_sampling({"api": ratio}, default=0.0)
    spans = [span(t, s, "op") for t in (QUARTER, THREE_QUARTERS) for s in (1, 2)]
    request = trace_request("api", spans)
    for summary in (core.check(request, NOW, tenant="acme"), core.ingest(request, NOW)):
        counts = (summary.accepted_spans, summary.sampled_out_spans, summary.rejected_spans)
        assert counts == (accepted, sampled_out, 0)
        assert summary.error_message == ""
    assert core.pending_spans == accepted


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
