"""``SeqSet``: a set of spool sequence numbers, kept as a floor plus the extras above it."""

from __future__ import annotations

from collections.abc import Iterable


class SeqSet:
    """A set of sequence numbers: a floor (every seq from 1 to it is in) plus the extras above
    floor + 1. Seqs start at 1, so ``SeqSet()`` is empty. Holds what is durable, and what a
    sink has committed."""

    __slots__ = ("_extras", "_floor")

    def __init__(self, floor: int = 0, extras: Iterable[int] = ()) -> None:
        if floor < 0:
            raise ValueError(f"floor must be >= 0, not {floor}")
        self._floor = floor
        self._extras: set[int] = set()
        self.update(extras)

    @property
    def floor(self) -> int:
        return self._floor

    @property
    def extras(self) -> tuple[int, ...]:
        return tuple(sorted(self._extras))

    def add(self, seq: int) -> None:
        """Add ``seq``, then raise the floor over every extra it now reaches."""
        if seq < 1:
            raise ValueError(f"seqs start at 1, not {seq}")
        if seq > self._floor + 1:
            self._extras.add(seq)
            return
        floor = max(seq, self._floor)
        while floor + 1 in self._extras:
            floor += 1
            self._extras.remove(floor)
        self._floor = floor

    def update(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            self.add(seq)

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and (1 <= seq <= self._floor or seq in self._extras)

    def covers(self, seqs: Iterable[int]) -> bool:
        """Whether every one of ``seqs`` is in the set."""
        return all(seq in self for seq in seqs)

    def copy(self) -> SeqSet:
        clone = SeqSet(self._floor)
        clone._extras = set(self._extras)
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeqSet):
            return NotImplemented
        return self._floor == other._floor and self._extras == other._extras

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"SeqSet(floor={self._floor}, extras={self.extras})"
