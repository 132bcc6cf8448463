"""Read-side exponential buckets: downscaling, adding, subtracting, explicit bounds."""

from __future__ import annotations

from tidegate._core import histogram_quantile
from tidegate.query.exp_buckets import ExpBuckets


def test_downscale_maps_index_i_to_i_shifted() -> None:
    b = ExpBuckets(2, 1, -3, (1, 2, 3, 4, 5), 0, ())
    down = b.downscaled(0)
    # Indexes -3..1 at scale 2 → -1, -1, -1, 0, 0 at scale 0 (i >> 2).
    assert (down.scale, down.positive_offset, down.positive) == (0, -1, (6, 9))
    assert down.zero_count == 1


def test_combine_at_the_coarser_scale_and_subtract_floors_at_zero() -> None:
    a = ExpBuckets(1, 2, 0, (1, 1), 0, ())
    b = ExpBuckets(0, 1, 1, (4,), 0, (3,))
    total = a.combined(b)
    assert (total.scale, total.zero_count) == (0, 3)
    assert (total.positive_offset, total.positive) == (0, (2, 4))
    assert (total.negative_offset, total.negative) == (0, (3,))
    diff = total.combined(b, sign=-1)
    assert (diff.positive_offset, diff.positive, diff.zero_count) == (0, (2, 0), 2)
    assert diff.negative == (0,)


def test_explicit_form_keeps_lower_edges_and_gives_quantiles_inside_the_bucket() -> None:
    # Scale 0: positive bucket 3 is (8, 16].
    b = ExpBuckets(0, 0, 3, (10,), 0, ())
    bounds, counts = b.to_explicit()
    assert bounds == [0.0, 8.0, 16.0]
    assert counts == [0, 0, 10, 0]
    p50 = histogram_quantile(bounds, counts, 0.5)
    assert p50 == 12.0
    neg = ExpBuckets(0, 0, 0, (), 1, (4,))
    assert neg.to_explicit() == ([-4.0, -2.0, 0.0], [0, 4, 0, 0])
