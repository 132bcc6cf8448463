"""Exponential-histogram buckets on the read side: add, subtract and convert to explicit
bounds. The merge rule is the one the Rust core applies to windows (``rust/exp_buckets.rs``):
bring both to the coarser scale, where bucket ``i`` at scale ``s`` lies in ``i >> d`` at
``s - d``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExpBuckets:
    scale: int
    zero_count: int
    positive_offset: int
    positive: tuple[int, ...]
    negative_offset: int
    negative: tuple[int, ...]

    def downscaled(self, scale: int) -> ExpBuckets:
        """The same counts at ``scale`` (not above the current one)."""
        by = self.scale - scale
        if by <= 0:
            return self
        pos_offset, pos = _downscale(self.positive_offset, self.positive, by)
        neg_offset, neg = _downscale(self.negative_offset, self.negative, by)
        return ExpBuckets(scale, self.zero_count, pos_offset, pos, neg_offset, neg)

    def combined(self, other: ExpBuckets, sign: int = 1) -> ExpBuckets:
        """``self + other`` (``sign`` 1) or ``self - other`` (``sign`` -1, counts floored at
        0), at the coarser scale."""
        scale = min(self.scale, other.scale)
        a, b = self.downscaled(scale), other.downscaled(scale)
        pos_offset, pos = _combine(
            a.positive_offset, a.positive, b.positive_offset, b.positive, sign
        )
        neg_offset, neg = _combine(
            a.negative_offset, a.negative, b.negative_offset, b.negative, sign
        )
        zero = max(0, a.zero_count + sign * b.zero_count)
        return ExpBuckets(scale, zero, pos_offset, pos, neg_offset, neg)

    def to_explicit(self) -> tuple[list[float], list[int]]:
        """Upper bounds and counts, laid out as ``ExpBuckets::to_explicit`` in the core does:
        empty buckets close the lower edges of the first negative and first positive bucket."""
        base_log2 = 2.0**-self.scale
        bounds: list[float] = []
        counts: list[int] = []
        if self.negative:
            counts.append(0)
            bounds.append(-(2.0 ** ((self.negative_offset + len(self.negative)) * base_log2)))
        for k in reversed(range(len(self.negative))):
            counts.append(self.negative[k])
            bounds.append(-(2.0 ** ((self.negative_offset + k) * base_log2)))
        counts.append(self.zero_count)
        bounds.append(0.0)
        if self.positive:
            counts.append(0)
            bounds.append(2.0 ** (self.positive_offset * base_log2))
        for k, count in enumerate(self.positive):
            counts.append(count)
            bounds.append(2.0 ** ((self.positive_offset + k + 1) * base_log2))
        counts.append(0)
        return bounds, counts


def _downscale(offset: int, counts: tuple[int, ...], by: int) -> tuple[int, tuple[int, ...]]:
    if not counts:
        return offset >> by, counts
    new_offset = offset >> by
    out = [0] * (((offset + len(counts) - 1) >> by) - new_offset + 1)
    for k, count in enumerate(counts):
        out[((offset + k) >> by) - new_offset] += count
    return new_offset, tuple(out)


def _combine(
    a_offset: int, a: tuple[int, ...], b_offset: int, b: tuple[int, ...], sign: int
) -> tuple[int, tuple[int, ...]]:
    if not b:
        return a_offset, a
    if not a:
        a_offset = b_offset
    start = min(a_offset, b_offset)
    end = max(a_offset + len(a), b_offset + len(b))
    out = [0] * (end - start)
    for k, count in enumerate(a):
        out[a_offset - start + k] += count
    for k, count in enumerate(b):
        out[b_offset - start + k] += sign * count
    return start, tuple(max(0, c) for c in out)
